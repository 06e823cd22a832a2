/** Groups, deletes and mutes against Postgres: the rows they write and the events with them. */
import assert from "node:assert/strict";
import type { Sql } from "../shared/db.ts";
import type { EventData, EventType } from "../shared/events.ts";
import { integrationTest, migratedDatabase, type TestEnv } from "../testing/env.ts";
import {
  addMembers,
  createGroup,
  findGroup,
  listGroup,
  listGroupSummaries,
  markGroupRead,
  muteDialog,
  muteGroup,
  removeMember,
  sendGroupMessage,
} from "./group_store.ts";
import {
  applyCountedReplies,
  deleteMessage,
  markMessagesRead,
  sendMessage,
  sweepTimedOutSends,
} from "./message_store.ts";
import type { MessageRow } from "./messages.ts";
import { TIMEOUT_REASON } from "./saga.ts";

const uuid = () => crypto.randomUUID();
const TIMEOUT_MS = 60_000;

async function withDialogs(env: TestEnv, fn: (sql: Sql) => Promise<void>): Promise<void> {
  const sql = await migratedDatabase(env.dialogsDatabaseUrl, "dialogs");
  try {
    await fn(sql);
  } finally {
    await sql.end();
  }
}

/** The data of the outbox's events of `type`, oldest first. */
async function events<T extends EventType>(sql: Sql, type: T): Promise<EventData<T>[]> {
  const rows = await sql<{ payload: { data: EventData<T> } }[]>`
    select payload from outbox where payload->>'type' = ${type} order by created_at, id`;
  return rows.map((r) => r.payload.data);
}

/** A group of `owner` and `others`, with the outbox emptied of its creation. */
async function group(sql: Sql, owner: string, others: string[] = []) {
  const g = await createGroup(sql, { ownerId: owner, title: "team", members: others });
  await sql`delete from outbox`;
  return g.id;
}

/** Sends to the group and commits the message with `seq`, as counters' reply does. */
async function committedSend(sql: Sql, groupId: string, senderId: string, seq: number) {
  const sent = await sendGroupMessage(sql, { senderId, groupId, text: `m${seq}`, mentions: [] });
  assert.equal(sent.kind, "sent");
  const message = (sent as { message: MessageRow }).message;
  const [result] = await applyCountedReplies(sql, [{
    transactionId: message.transaction_id,
    messageId: message.id,
    outcome: "counted",
    seq,
  }], TIMEOUT_MS);
  assert.equal(result!.kind, "applied");
  return message;
}

integrationTest(
  "sendGroupMessage() stores a pending message and its event with mentions deduped, without the sender, empty for all",
  async (env) => {
    await withDialogs(env, async (sql) => {
      const [owner, bob, carol, stranger] = [uuid(), uuid(), uuid(), uuid()];
      const groupId = await group(sql, owner, [bob, carol]);
      const named = await sendGroupMessage(sql, {
        senderId: owner,
        groupId,
        text: "hi @bob",
        mentions: [bob, bob.toUpperCase(), owner],
      });
      assert.equal(named.kind, "sent");
      const all = await sendGroupMessage(sql, {
        senderId: bob,
        groupId,
        text: "hi @all",
        mentions: ["all", carol],
      });
      const sent = await events(sql, "dialogs.group.message.sent");
      assert.deepEqual(sent.map((e) => [e.senderId, e.mentions, e.mentionsAll]), [
        [owner, [bob], false],
        [bob, [], true],
      ]);
      assert.ok(all.kind === "sent");
      assert.deepEqual(
        [all.message.status, all.message.seq, all.message.mentions_all, all.message.mentions],
        ["pending", null, true, [carol]],
      );
      assert.deepEqual(
        await sendGroupMessage(sql, { senderId: owner, groupId, text: "x", mentions: [stranger] }),
        { kind: "not_members", userIds: [stranger] },
      );
      assert.deepEqual(
        await sendGroupMessage(sql, { senderId: stranger, groupId, text: "x", mentions: [] }),
        { kind: "not_found" },
      );
      assert.equal((await events(sql, "dialogs.group.message.sent")).length, 2);
    });
  },
);

integrationTest(
  "a group send's Idempotency-Key returns the first message and writes no second event",
  async (env) => {
    await withDialogs(env, async (sql) => {
      const owner = uuid();
      const groupId = await group(sql, owner);
      const send = () =>
        sendGroupMessage(sql, {
          senderId: owner,
          groupId,
          text: "once",
          mentions: [],
          idempotencyKey: "k",
        });
      const first = await send();
      const again = await send();
      assert.ok(first.kind === "sent" && again.kind === "sent");
      assert.deepEqual([first.created, again.created], [true, false]);
      assert.equal(again.message.id, first.message.id);
      assert.equal((await events(sql, "dialogs.group.message.sent")).length, 1);
    });
  },
);

integrationTest(
  "applyCountedReplies() commits group messages with the reply's seq and raises last_committed_seq, never lowers it",
  async (env) => {
    await withDialogs(env, async (sql) => {
      const owner = uuid();
      const groupId = await group(sql, owner);
      const sends = [];
      for (const text of ["a", "b", "c"]) {
        const r = await sendGroupMessage(sql, { senderId: owner, groupId, text, mentions: [] });
        assert.ok(r.kind === "sent");
        sends.push(r.message);
      }
      const reply = (m: MessageRow, seq?: number) => ({
        transactionId: m.transaction_id,
        messageId: m.id,
        outcome: "counted" as const,
        ...(seq ? { seq } : {}),
      });
      const results = await applyCountedReplies(
        sql,
        [reply(sends[1]!, 2), reply(sends[0]!, 1), reply(sends[2]!)],
        TIMEOUT_MS,
      );
      assert.deepEqual(results.map((r) => r.kind), ["applied", "applied", "invalid"]);
      const rows = await sql<{ text: string; status: string; seq: number | null }[]>`
        select text, status, seq::float8 as seq from messages order by text`;
      assert.deepEqual(rows.map((r) => [r.text, r.status, r.seq]), [
        ["a", "committed", 1],
        ["b", "committed", 2],
        ["c", "pending", null],
      ]);
      await applyCountedReplies(sql, [reply(sends[2]!, 3)], TIMEOUT_MS);
      const [g] = await sql<{ last: number }[]>`
        select last_committed_seq::float8 as last from groups where id = ${groupId}`;
      assert.equal(g!.last, 3);
      await sql`update messages set status = 'pending', seq = null where text = 'a'`;
      await applyCountedReplies(sql, [reply(sends[0]!, 1)], TIMEOUT_MS);
      const [same] = await sql<{ last: number }[]>`
        select last_committed_seq::float8 as last from groups where id = ${groupId}`;
      assert.equal(same!.last, 3, "an older seq leaves last_committed_seq where it is");
    });
  },
);

integrationTest(
  "a late reply to a group message fails it and writes a group cancel, not a dialog cancel",
  async (env) => {
    await withDialogs(env, async (sql) => {
      const owner = uuid();
      const groupId = await group(sql, owner);
      const sent = await sendGroupMessage(sql, {
        senderId: owner,
        groupId,
        text: "late",
        mentions: [],
      });
      assert.ok(sent.kind === "sent");
      await sql`update messages set created_at = now() - interval '10 seconds'`;
      const [result] = await applyCountedReplies(sql, [{
        transactionId: sent.message.transaction_id,
        messageId: sent.message.id,
        outcome: "counted",
        seq: 1,
      }], 5_000);
      assert.deepEqual(result && "timedOut" in result ? [result.status, result.timedOut] : result, [
        "failed",
        true,
      ]);
      assert.deepEqual(await events(sql, "dialogs.group.message.cancelled"), [{
        transactionId: sent.message.transaction_id,
        messageId: sent.message.id,
        groupId,
        senderId: owner,
        reason: TIMEOUT_REASON,
      }]);
      assert.deepEqual(await events(sql, "dialogs.message.cancelled"), []);
      const [row] = await sql`select status, seq from messages`;
      assert.deepEqual([row!.status, row!.seq], ["failed", null]);
      const [g] = await sql`select last_committed_seq::int as last from groups`;
      assert.equal(g!.last, 0);
    });
  },
);

integrationTest("the sweeper fails a timed-out group send with a group cancel", async (env) => {
  await withDialogs(env, async (sql) => {
    const owner = uuid();
    const groupId = await group(sql, owner);
    await sendGroupMessage(sql, { senderId: owner, groupId, text: "stuck", mentions: [] });
    await sendMessage(sql, { senderId: owner, recipientId: uuid(), text: "stuck too" });
    await sql`update messages set created_at = now() - interval '2 minutes'`;
    assert.equal(await sweepTimedOutSends(sql, 30_000), 2);
    const cancels = await events(sql, "dialogs.group.message.cancelled");
    const dialog = await events(sql, "dialogs.message.cancelled");
    assert.deepEqual([cancels.length, cancels[0]!.groupId], [1, groupId]);
    assert.equal(dialog.length, 1);
  });
});

integrationTest(
  "addMembers() joins users at last_committed_seq; a leave keeps the row as not a member; a re-add joins anew",
  async (env) => {
    await withDialogs(env, async (sql) => {
      const [owner, bob, carol] = [uuid(), uuid(), uuid()];
      const groupId = await group(sql, owner, [bob]);
      await committedSend(sql, groupId, owner, 1);
      await committedSend(sql, groupId, bob, 2);
      const added = await addMembers(sql, {
        groupId,
        actorId: bob,
        userIds: [carol, carol, owner],
        maxMembers: 10,
      });
      assert.deepEqual(added, { kind: "added", added: 1 });
      assert.deepEqual((await findGroup(sql, groupId, carol))?.me, {
        joinedSeq: 2,
        readSeq: 0,
        muted: false,
      });
      assert.equal((await findGroup(sql, groupId, carol))?.member_count, 3);
      const joined = await events(sql, "dialogs.group.members.changed");
      assert.deepEqual(joined.at(-1), {
        groupId,
        members: [{
          userId: carol,
          member: true,
          joinedSeq: 2,
          readSeq: 0,
          muted: false,
          version: 1,
        }],
      });

      assert.equal(await removeMember(sql, { groupId, actorId: carol, userId: bob }), "forbidden");
      assert.equal(await removeMember(sql, { groupId, actorId: carol, userId: carol }), "removed");
      assert.equal(
        await removeMember(sql, { groupId, actorId: carol, userId: carol }),
        "not_found",
      );
      assert.equal(await findGroup(sql, groupId, carol), undefined);
      const left = (await events(sql, "dialogs.group.members.changed")).at(-1)!;
      assert.deepEqual(left.members, [
        { userId: carol, member: false, joinedSeq: 2, readSeq: 0, muted: false, version: 2 },
      ]);
      assert.deepEqual(
        await sendGroupMessage(sql, { senderId: carol, groupId, text: "x", mentions: [] }),
        { kind: "not_found" },
      );

      await committedSend(sql, groupId, owner, 3);
      assert.deepEqual(
        await addMembers(sql, { groupId, actorId: owner, userIds: [carol], maxMembers: 10 }),
        { kind: "added", added: 1 },
      );
      const back = (await events(sql, "dialogs.group.members.changed")).at(-1)!;
      assert.deepEqual(back.members, [
        { userId: carol, member: true, joinedSeq: 3, readSeq: 0, muted: false, version: 3 },
      ]);
      assert.equal(await removeMember(sql, { groupId, actorId: owner, userId: bob }), "removed");
      assert.deepEqual(
        await addMembers(sql, {
          groupId,
          actorId: owner,
          userIds: [uuid(), uuid()],
          maxMembers: 3,
        }),
        { kind: "too_many", memberCount: 4 },
      );
      assert.deepEqual(
        await addMembers(sql, { groupId, actorId: bob, userIds: [uuid()], maxMembers: 10 }),
        { kind: "not_found" },
      );
    });
  },
);

integrationTest(
  "markGroupRead() counts the unread it covers past joinedSeq and readSeq, and never moves back",
  async (env) => {
    await withDialogs(env, async (sql) => {
      const [owner, bob, carol] = [uuid(), uuid(), uuid()];
      const groupId = await group(sql, owner, [bob]);
      const m1 = await committedSend(sql, groupId, owner, 1);
      await addMembers(sql, { groupId, actorId: owner, userIds: [carol], maxMembers: 10 });
      await committedSend(sql, groupId, bob, 2);
      const m3 = await committedSend(sql, groupId, owner, 3);
      await committedSend(sql, groupId, carol, 4);
      const seqOf = async (m: MessageRow) =>
        (await sql<MessageRow[]>`select seq::float8 as seq from messages where id = ${m.id}`)[0]!;
      await sql`delete from outbox`;

      // carol joined at 1: seq 2 and 3 count for her, 4 is her own.
      const upTo3 = await markGroupRead(sql, { readerId: carol, groupId, upTo: await seqOf(m3) });
      assert.deepEqual(upTo3, { read: 2, readSeq: 3 });
      assert.deepEqual(
        await markGroupRead(sql, { readerId: carol, groupId, upTo: await seqOf(m1) }),
        {
          read: 0,
          readSeq: 3,
        },
      );
      assert.deepEqual(await markGroupRead(sql, { readerId: carol, groupId }), {
        read: 0,
        readSeq: 4,
      });
      assert.deepEqual(await markGroupRead(sql, { readerId: carol, groupId }), {
        read: 0,
        readSeq: 4,
      });
      // bob: seq 1, 3 and 4 are others'.
      assert.deepEqual(await markGroupRead(sql, { readerId: bob, groupId }), {
        read: 3,
        readSeq: 4,
      });
      const changed = await events(sql, "dialogs.group.members.changed");
      assert.deepEqual(changed.map((e) => e.members.map((m) => [m.userId, m.readSeq, m.version])), [
        [[carol, 3, 2]],
        [[carol, 4, 3]],
        [[bob, 4, 2]],
      ]);
      assert.equal(await markGroupRead(sql, { readerId: uuid(), groupId }), undefined);
    });
  },
);

integrationTest(
  "deleteMessage() of an unread dialog message writes dialogs.message.deleted; of a read one nothing",
  async (env) => {
    await withDialogs(env, async (sql) => {
      const [a, b] = [uuid(), uuid()];
      const send = async (text: string) =>
        (await sendMessage(sql, { senderId: a, recipientId: b, text })).message;
      const [unread, read, pending] = [await send("u"), await send("r"), await send("p")];
      await sql`update messages set status = 'committed' where id in (${unread.id}, ${read.id})`;
      await sql`update messages set read_at = now() where id = ${read.id}`;
      assert.equal(await deleteMessage(sql, { userId: b, messageId: unread.id }), "not_found");
      assert.equal(await deleteMessage(sql, { userId: a, messageId: pending.id }), "conflict");
      assert.equal(await deleteMessage(sql, { userId: a, messageId: unread.id }), "deleted");
      assert.equal(await deleteMessage(sql, { userId: a, messageId: read.id }), "deleted");
      assert.equal(await deleteMessage(sql, { userId: a, messageId: unread.id }), "deleted");
      const deleted = await events(sql, "dialogs.message.deleted");
      assert.deepEqual(deleted.map((e) => [e.messageId, e.senderId, e.recipientId]), [
        [unread.id, a, b],
      ]);
      assert.notEqual(deleted[0]!.transactionId, unread.transaction_id, "the delete's own");
      // A deleted message is never read afterwards and no longer listed.
      assert.deepEqual(await markMessagesRead(sql, { readerId: b, peerId: a }), { read: 0 });
      const [row] = await sql`select status, deleted_at from messages where id = ${unread.id}`;
      assert.equal(row!.status, "deleted");
      assert.ok(row!.deleted_at instanceof Date);
    });
  },
);

integrationTest(
  "deleteMessage() of a committed group message writes its seq once, hides it from lists",
  async (env) => {
    await withDialogs(env, async (sql) => {
      const [owner, bob] = [uuid(), uuid()];
      const groupId = await group(sql, owner, [bob]);
      const m = await committedSend(sql, groupId, owner, 1);
      await committedSend(sql, groupId, owner, 2);
      assert.equal(await deleteMessage(sql, { userId: bob, messageId: m.id }), "not_found");
      assert.equal(await deleteMessage(sql, { userId: owner, messageId: m.id }), "deleted");
      assert.equal(await deleteMessage(sql, { userId: owner, messageId: m.id }), "deleted");
      const deleted = await events(sql, "dialogs.group.message.deleted");
      assert.deepEqual(deleted.map((e) => [e.messageId, e.groupId, e.senderId, e.seq]), [
        [m.id, groupId, owner, 1],
      ]);
      for (const user of [owner, bob]) {
        const listed = await listGroup(sql, user, groupId, { limit: 10 });
        assert.deepEqual(listed.map((r) => r.text), ["m2"]);
      }
      // bob's read covers only what is left.
      assert.deepEqual(await markGroupRead(sql, { readerId: bob, groupId }), {
        read: 1,
        readSeq: 2,
      });
    });
  },
);

integrationTest(
  "mutes write their events with a version that goes up every time",
  async (env) => {
    await withDialogs(env, async (sql) => {
      const [me, peer, bob] = [uuid(), uuid(), uuid()];
      for (const muted of [true, false, true]) {
        await muteDialog(sql, { userId: me, targetId: peer, muted });
      }
      assert.deepEqual(
        (await events(sql, "dialogs.dialog.muted")).map((
          e,
        ) => [e.userId, e.peerId, e.muted, e.version]),
        [[me, peer, true, 1], [me, peer, false, 2], [me, peer, true, 3]],
      );
      const groupId = await group(sql, me, [bob]);
      assert.equal(await muteGroup(sql, { userId: me, targetId: groupId, muted: true }), true);
      assert.equal(await muteGroup(sql, { userId: me, targetId: groupId, muted: false }), true);
      assert.equal(await muteGroup(sql, { userId: uuid(), targetId: groupId, muted: true }), false);
      const changed = await events(sql, "dialogs.group.members.changed");
      assert.deepEqual(changed.map((e) => e.members.map((m) => [m.userId, m.muted, m.version])), [
        [[me, true, 2]],
        [[me, false, 3]],
      ]);
      assert.equal((await findGroup(sql, groupId, me))?.me.muted, false);
    });
  },
);

integrationTest(
  "a group of 2,500 members is announced in members-changed events of at most 1,000",
  async (env) => {
    await withDialogs(env, async (sql) => {
      const owner = uuid();
      const others = Array.from({ length: 2_499 }, uuid);
      const created = await createGroup(sql, { ownerId: owner, title: "big", members: others });
      assert.equal(created.member_count, 2_500);
      const changed = await events(sql, "dialogs.group.members.changed");
      assert.deepEqual(changed.map((e) => e.members.length), [1_000, 1_000, 500]);
      const everyone = new Set(changed.flatMap((e) => e.members.map((m) => m.userId)));
      assert.equal(everyone.size, 2_500);
      assert.ok(everyone.has(owner));
      assert.ok(changed.every((e) => e.groupId === created.id));
    });
  },
);

integrationTest(
  "listGroupSummaries() lists the member's groups by their last visible message, or creation",
  async (env) => {
    await withDialogs(env, async (sql) => {
      const [me, bob] = [uuid(), uuid()];
      const quiet = await group(sql, me);
      const busy = await group(sql, bob, [me]);
      await sendGroupMessage(sql, { senderId: bob, groupId: busy, text: "pending", mentions: [] });
      assert.deepEqual(
        (await listGroupSummaries(sql, me, 10)).map((g) => [g.groupId, g.lastMessage?.text]),
        [[busy, undefined], [quiet, undefined]],
      );
      await committedSend(sql, quiet, me, 1);
      assert.deepEqual(
        (await listGroupSummaries(sql, me, 10)).map((g) => [g.groupId, g.lastMessage?.text]),
        [[quiet, "m1"], [busy, undefined]],
      );
      assert.equal((await listGroupSummaries(sql, me, 1)).length, 1);
      assert.deepEqual(await listGroupSummaries(sql, uuid(), 10), []);
    });
  },
);
