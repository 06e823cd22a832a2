import assert from "node:assert/strict";
import type { Sql } from "../shared/db.ts";
import type { EventData } from "../shared/events.ts";
import {
  applyDialogMuted,
  applyGroupMembersChanged,
  applyGroupMessageCancelled,
  applyGroupMessageDeleted,
  applyMessageDeleted,
  loadManyGroupCounters,
  loadManyUserCounters,
  loadUserCounters,
  rowsWrittenPerGroupMessage,
} from "./counter_store.ts";
import { composedVersion, countersBody, type GroupLookup } from "./counters.ts";
import { applyMessageSent, applyMessagesSent } from "./send_batch.ts";
import { findLedgerDrift, reconcileOnce } from "./reconcile.ts";
import { refreshBeforeReplies } from "./counter_events.ts";
import { enqueueEvents } from "../shared/outbox.ts";
import { messageSentData } from "../testing/fixtures.ts";
import { integrationTest, withCountersDatabase } from "../testing/env.ts";

const uuid = (): string => crypto.randomUUID();

function groupSent(
  groupId: string,
  senderId: string,
  mentions: string[] = [],
  mentionsAll = false,
): EventData<"dialogs.group.message.sent"> {
  return {
    transactionId: uuid(),
    messageId: uuid(),
    groupId,
    senderId,
    mentions,
    mentionsAll,
    sentAt: new Date().toISOString(),
  };
}

function cancelOf(data: EventData<"dialogs.group.message.sent">) {
  const { transactionId, messageId, groupId, senderId } = data;
  return { transactionId, messageId, groupId, senderId, reason: "the saga timed out" };
}

function deleteOf(data: EventData<"dialogs.group.message.sent">, seq: number) {
  const { messageId, groupId, senderId } = data;
  return { messageId, groupId, senderId, seq, deletedAt: new Date().toISOString() };
}

/** The replies of these results: transaction, outcome and seq (null when none). */
function replies(
  results: { reply: { data: { transactionId: string; outcome: string; seq?: number } } }[],
) {
  return results.map(({ reply: { data } }) => ({
    transactionId: data.transactionId,
    outcome: data.outcome,
    seq: data.seq ?? null,
  }));
}

/** A result without its reply and cache keys. */
function outcomeOf<T extends { reply: unknown; keys: unknown }>(result: T) {
  const { reply: _reply, keys: _keys, ...rest } = result;
  return rest;
}

async function versionsOf(sql: Sql, userIds: string[]): Promise<number[]> {
  return (await loadManyUserCounters(sql, userIds)).map((u) => u.version);
}

/** Joins users to a group (founding members unless `joinedSeq`), each with version `version`. */
async function join(
  sql: Sql,
  groupId: string,
  userIds: string[],
  state: { joinedSeq?: number; readSeq?: number; version?: number; member?: boolean } = {},
) {
  for (let i = 0; i < userIds.length; i += 1_000) {
    await applyGroupMembersChanged(sql, {
      groupId,
      members: userIds.slice(i, i + 1_000).map((userId) => ({
        userId,
        member: state.member ?? true,
        joinedSeq: state.joinedSeq ?? 0,
        readSeq: state.readSeq ?? 0,
        muted: false,
        version: state.version ?? 1,
      })),
    });
  }
}

/** The composed bodies of these users from the loaded states. */
async function bodies(sql: Sql, userIds: string[]) {
  const users = await loadManyUserCounters(sql, userIds);
  const groupIds = [...new Set(users.flatMap((u) => Object.keys(u.groups ?? {})))];
  const states = await loadManyGroupCounters(sql, groupIds);
  const lookup: GroupLookup = (g) => states[groupIds.indexOf(g)];
  return users.map((u) => countersBody(u, lookup));
}

integrationTest(
  "a group send gets the group's next seq, in its reply too; a redelivery counts nothing twice",
  async (env) => {
    await withCountersDatabase(env, async (sql) => {
      const [group, alice, bob] = [uuid(), uuid(), uuid()];
      const first = groupSent(group, alice);
      const second = groupSent(group, bob, [alice]);
      const counted = [await applyMessageSent(sql, first)];
      assert.deepEqual(outcomeOf(counted[0]!), {
        applied: true,
        outcome: "counted",
        reason: undefined,
        seq: 1,
      });
      counted.push(await applyMessageSent(sql, second));
      assert.equal(counted[1]!.seq, 2);
      assert.deepEqual(counted[1]!.keys, [`group:${group}`, `user:${bob}`, `user:${alice}`]);
      const again = await applyMessageSent(sql, second);
      assert.deepEqual(outcomeOf(again), {
        applied: false,
        outcome: "counted",
        reason: undefined,
        seq: 2,
      });
      assert.deepEqual(again.reply, { ...counted[1]!.reply, occurredAt: again.reply.occurredAt });
      assert.deepEqual(again.keys, counted[1]!.keys, "a repeat refreshes the same states");
      const [state] = await loadManyGroupCounters(sql, [group]);
      assert.deepEqual({ ...state, version: undefined }, {
        version: undefined,
        lastSeq: 2,
        deleted: [],
        mentionsAll: [],
      });
      const written = replies(counted);
      assert.deepEqual(
        written.map((r) => [r.transactionId, r.outcome, r.seq]).sort(),
        [[first.transactionId, "counted", 1], [second.transactionId, "counted", 2]].sort(),
      );
      const [row] = await sql`select count(*)::int as n from group_messages`;
      assert.equal(row!.n, 2);
      // A group send is no dialog counter: nobody's dialogs changed.
      assert.deepEqual((await loadUserCounters(sql, alice)).dialogs, {});
    });
  },
);

integrationTest(
  "concurrent group sends and batches to one group get distinct consecutive seqs",
  async (env) => {
    await withCountersDatabase(env, async (sql) => {
      const [group, other] = [uuid(), uuid()];
      const lone = Array.from({ length: 6 }, () => groupSent(group, uuid()));
      const batch = [
        groupSent(group, uuid()),
        groupSent(other, uuid()),
        { ...messageSentData() },
        groupSent(group, uuid()),
      ];
      const results = await Promise.all([
        ...lone.map((s) => applyMessageSent(sql, s)),
        applyMessagesSent(sql, batch.map((data) => ({ data }))),
      ]);
      const batchResults = results.pop() as Awaited<ReturnType<typeof applyMessagesSent>>;
      const loneSeqs = (results as Awaited<ReturnType<typeof applyMessageSent>>[]).map((r) =>
        r.seq
      );
      const seqs = [...loneSeqs, batchResults[0]!.seq, batchResults[3]!.seq];
      assert.deepEqual(seqs.toSorted((a, b) => a! - b!), [1, 2, 3, 4, 5, 6, 7, 8]);
      assert.ok(batchResults[0]!.seq! < batchResults[3]!.seq!, "a batch's sends keep their order");
      assert.equal(batchResults[1]!.seq, 1, "each group has its own seqs");
      assert.equal(batchResults[2]!.seq, undefined, "a dialog send has no seq");
      const [g, o] = await loadManyGroupCounters(sql, [group, other]);
      assert.deepEqual([g!.lastSeq, o!.lastSeq], [8, 1]);
    });
  },
);

integrationTest(
  "a CHECK on group_counters.last_seq fails the send that would break it, with no seq",
  async (env) => {
    await withCountersDatabase(env, async (sql) => {
      await sql`alter table group_counters add constraint group_seq_max check (last_seq <= 3)`;
      const group = uuid();
      for (let i = 1; i <= 2; i++) await applyMessageSent(sql, groupSent(group, uuid()));
      const [third, refused, dialog] = [
        groupSent(group, uuid()),
        groupSent(group, uuid(), [uuid()]),
        {
          ...messageSentData(),
        },
      ];
      const results = await applyMessagesSent(
        sql,
        [third, refused, dialog].map((data) => ({
          data,
        })),
      );
      assert.deepEqual(results.map((r) => [r.outcome, r.seq]), [
        ["counted", 3],
        ["failed", undefined],
        ["counted", undefined],
      ]);
      assert.match(results[1]!.reason ?? "", /group_seq_max/);
      const reply = replies(results).find((r) => r.transactionId === refused.transactionId);
      assert.deepEqual(reply, {
        transactionId: refused.transactionId,
        outcome: "failed",
        seq: null,
      });
      const [state] = await loadManyGroupCounters(sql, [group]);
      assert.equal(state!.lastSeq, 3);
      const [row] = await sql`
        select count(*)::int as n from group_messages where message_id = ${refused.messageId}`;
      assert.equal(row!.n, 0);
      const [mentions] = await sql`select count(*)::int as n from group_mentions`;
      assert.equal(mentions!.n, 0);
      // Remembered: the same answer again once the constraint is gone.
      await sql`alter table group_counters drop constraint group_seq_max`;
      const again = await applyMessageSent(sql, refused);
      assert.deepEqual([again.applied, again.outcome, again.seq], [false, "failed", undefined]);
      assert.equal(again.reply.id, results[1]!.reply.id, "answered again under the same id");
      assert.deepEqual(again.keys, []);
    });
  },
);

integrationTest(
  "a group send names each other member once in group_mentions, never its sender",
  async (env) => {
    await withCountersDatabase(env, async (sql) => {
      const [group, alice, bob, carol] = [uuid(), uuid(), uuid(), uuid()];
      const before = await versionsOf(sql, [alice, bob, carol]);
      await applyMessageSent(sql, groupSent(group, alice, [bob, alice, bob.toUpperCase()]));
      await applyMessageSent(sql, groupSent(group, bob, [], true));
      const rows = await sql`select user_id, seq from group_mentions order by seq`;
      assert.deepEqual(rows.map((r) => [r.user_id, Number(r.seq)]), [[bob, 1]]);
      assert.deepEqual(await versionsOf(sql, [alice, bob, carol]), [
        before[0]! + 1,
        before[1]! + 2,
        before[2]!,
      ], "sender and named members only; @all changes the group alone");
      const [state] = await loadManyGroupCounters(sql, [group]);
      assert.deepEqual(state!.mentionsAll, [2]);
    });
  },
);

integrationTest(
  "a group cancel after the count makes the seq count for no one; a repeat changes nothing",
  async (env) => {
    await withCountersDatabase(env, async (sql) => {
      const [group, alice, bob, carol] = [uuid(), uuid(), uuid(), uuid()];
      await join(sql, group, [alice, bob, carol]);
      const kept = groupSent(group, alice);
      const cancelled = groupSent(group, alice, [bob]);
      await applyMessageSent(sql, kept);
      await applyMessageSent(sql, cancelled);
      assert.deepEqual((await bodies(sql, [bob])).map((b) => b.groups[group]), [
        { unread: 2, mentions: 1 },
      ]);
      const [groupBefore] = await loadManyGroupCounters(sql, [group]);
      const before = await versionsOf(sql, [alice, bob, carol]);
      const undone = await applyGroupMessageCancelled(sql, cancelOf(cancelled));
      assert.equal(undone.result, "undone");
      assert.deepEqual(
        undone.keys.toSorted(),
        [`group:${group}`, `user:${alice}`, `user:${bob}`].toSorted(),
      );
      const [groupAfter] = await loadManyGroupCounters(sql, [group]);
      assert.deepEqual(groupAfter!.deleted, [2]);
      assert.ok(groupAfter!.version > groupBefore!.version);
      assert.deepEqual(await versionsOf(sql, [alice, bob, carol]), [
        before[0]! + 1,
        before[1]! + 1,
        before[2]!,
      ]);
      assert.deepEqual((await bodies(sql, [bob, carol])).map((b) => b.groups[group]), [
        { unread: 1, mentions: 0 },
        { unread: 1, mentions: 0 },
      ]);
      const repeat = await applyGroupMessageCancelled(sql, cancelOf(cancelled));
      assert.equal(repeat.result, "nothing");
      assert.deepEqual(await versionsOf(sql, [alice, bob, carol]), [
        before[0]! + 1,
        before[1]! + 1,
        before[2]!,
      ]);
      // A redelivered send after its cancel is answered failed, without a seq.
      const late = await applyMessageSent(sql, cancelled);
      assert.deepEqual([late.applied, late.outcome, late.seq], [false, "failed", undefined]);
    });
  },
);

integrationTest(
  "a group cancel before the send is remembered: the send then fails and takes no seq",
  async (env) => {
    await withCountersDatabase(env, async (sql) => {
      const [group, alice] = [uuid(), uuid()];
      const data = groupSent(group, alice, [uuid()]);
      assert.deepEqual(await applyGroupMessageCancelled(sql, cancelOf(data)), {
        result: "remembered",
        keys: [],
      });
      const result = await applyMessageSent(sql, data);
      assert.deepEqual([result.applied, result.outcome, result.seq], [false, "failed", undefined]);
      assert.match(result.reason ?? "", /cancelled/);
      const [state] = await loadManyGroupCounters(sql, [group]);
      assert.equal(state!.lastSeq, 0);
      const [row] = await sql`select count(*)::int as n from group_messages`;
      assert.equal(row!.n, 0);
      assert.equal((await applyMessageSent(sql, groupSent(group, alice))).seq, 1);
    });
  },
);

integrationTest(
  "a group delete drops the message from every count once, however often delivered",
  async (env) => {
    await withCountersDatabase(env, async (sql) => {
      const [group, alice, bob, carol] = [uuid(), uuid(), uuid(), uuid()];
      await join(sql, group, [alice, bob, carol]);
      const named = groupSent(group, alice, [bob]);
      const toAll = groupSent(group, carol, [], true);
      await applyMessageSent(sql, named);
      await applyMessageSent(sql, toAll);
      assert.deepEqual((await bodies(sql, [alice, bob])).map((b) => b.groups[group]), [
        { unread: 1, mentions: 1 },
        { unread: 2, mentions: 2 },
      ]);
      const before = await versionsOf(sql, [alice, bob, carol]);
      const keys = await applyGroupMessageDeleted(sql, deleteOf(named, 1));
      assert.deepEqual(
        keys.toSorted(),
        [`group:${group}`, `user:${alice}`, `user:${bob}`].toSorted(),
      );
      await applyGroupMessageDeleted(sql, deleteOf(toAll, 2));
      const [state] = await loadManyGroupCounters(sql, [group]);
      assert.deepEqual([state!.deleted, state!.mentionsAll], [[1, 2], []]);
      const after = await versionsOf(sql, [alice, bob, carol]);
      assert.deepEqual(after, [before[0]! + 1, before[1]! + 1, before[2]! + 1]);
      const groupVersion = state!.version;
      assert.deepEqual(await applyGroupMessageDeleted(sql, deleteOf(named, 1)), keys);
      assert.deepEqual(await versionsOf(sql, [alice, bob, carol]), after);
      assert.equal((await loadManyGroupCounters(sql, [group]))[0]!.version, groupVersion);
      const composed = await bodies(sql, [alice, bob, carol]);
      assert.deepEqual(composed.map((b) => [b.total, b.mentions, b.groups[group]]), [
        [0, 0, undefined],
        [0, 0, undefined],
        [0, 0, undefined],
      ]);
    });
  },
);

integrationTest(
  "group members keep the newest state by version, whatever order the events arrive in",
  async (env) => {
    await withCountersDatabase(env, async (sql) => {
      const [group, alice] = [uuid(), uuid()];
      await applyMessageSent(sql, groupSent(group, uuid()));
      const state = (version: number, readSeq: number, muted: boolean) => ({
        groupId: group,
        members: [{ userId: alice, member: true, joinedSeq: 0, readSeq, muted, version }],
      });
      assert.deepEqual(await applyGroupMembersChanged(sql, state(3, 1, true)), [alice]);
      const version = (await loadUserCounters(sql, alice)).version;
      assert.deepEqual(await applyGroupMembersChanged(sql, state(2, 0, false)), []);
      assert.deepEqual(await applyGroupMembersChanged(sql, state(3, 0, false)), []);
      const loaded = await loadUserCounters(sql, alice);
      assert.equal(loaded.version, version, "an old or repeated state changes no version");
      assert.deepEqual(loaded.groups, {
        [group]: { joinedSeq: 0, readSeq: 1, muted: true, own: [], mentions: [] },
      });
      // Newest duplicate in one event wins too.
      await applyGroupMembersChanged(sql, {
        groupId: group,
        members: [
          { userId: alice, member: true, joinedSeq: 0, readSeq: 1, muted: false, version: 5 },
          { userId: alice, member: true, joinedSeq: 0, readSeq: 1, muted: true, version: 4 },
        ],
      });
      assert.equal((await loadUserCounters(sql, alice)).groups![group]!.muted, false);
    });
  },
);

integrationTest(
  "leaving a group raises the user's version past the group's, so the composed version goes up",
  async (env) => {
    await withCountersDatabase(env, async (sql) => {
      const [group, alice, bob] = [uuid(), uuid(), uuid()];
      await join(sql, group, [alice, bob]);
      for (let i = 0; i < 5; i++) await applyMessageSent(sql, groupSent(group, bob));
      const composed = async () => {
        const [user] = await loadManyUserCounters(sql, [alice]);
        const [state] = await loadManyGroupCounters(sql, [group]);
        return composedVersion(user!, () => state);
      };
      const before = await composed();
      assert.ok((await loadManyGroupCounters(sql, [group]))[0]!.version >= 5);
      await join(sql, group, [alice], { member: false, version: 2 });
      const after = await composed();
      assert.ok(after > before, `composed version ${before} → ${after}`);
      assert.equal((await loadUserCounters(sql, alice)).groups, undefined);
      const [body] = await bodies(sql, [alice]);
      assert.deepEqual(body!.groups, {});
      // Re-joining counts only what comes after the join.
      await join(sql, group, [alice], { joinedSeq: 5, version: 3 });
      assert.ok((await composed()) > after);
      await applyMessageSent(sql, groupSent(group, bob));
      const [again] = await bodies(sql, [alice]);
      assert.deepEqual(again!.groups[group], { unread: 1, mentions: 0 });
    });
  },
);

integrationTest(
  "a dialog mute keeps the newest state by version and only changes total",
  async (env) => {
    await withCountersDatabase(env, async (sql) => {
      const [alice, peer] = [uuid(), uuid()];
      await applyMessageSent(sql, messageSentData({ recipientId: alice, senderId: peer }));
      const mute = (muted: boolean, version: number) => ({
        userId: alice,
        peerId: peer,
        muted,
        version,
      });
      assert.equal(await applyDialogMuted(sql, mute(true, 2)), true);
      assert.equal(await applyDialogMuted(sql, mute(false, 1)), false);
      assert.equal(await applyDialogMuted(sql, mute(true, 2)), false);
      const [body] = await bodies(sql, [alice]);
      assert.deepEqual(body, {
        total: 0,
        dialogs: { [peer]: 1 },
        groups: {},
        mentions: 0,
        muted: [peer],
      });
      assert.equal(await applyDialogMuted(sql, mute(false, 3)), true);
      assert.deepEqual((await bodies(sql, [alice]))[0]!.total, 1);
    });
  },
);

integrationTest(
  "a dialog delete takes one from the recipient's count once, and reconciliation agrees",
  async (env) => {
    await withCountersDatabase(env, async (sql) => {
      const [alice, peer] = [uuid(), uuid()];
      const sends = [1, 2].map(() => messageSentData({ recipientId: alice, senderId: peer }));
      for (const s of sends) await applyMessageSent(sql, s);
      await applyMessageSent(sql, groupSent(uuid(), alice, [peer]));
      const deleted = {
        transactionId: uuid(),
        messageId: sends[0]!.messageId,
        senderId: peer,
        recipientId: alice,
        deletedAt: new Date().toISOString(),
      };
      assert.equal(await applyMessageDeleted(sql, deleted), true);
      assert.equal(await applyMessageDeleted(sql, deleted), false);
      assert.deepEqual((await loadUserCounters(sql, alice)).dialogs, { [peer]: 1 });
      assert.deepEqual(await findLedgerDrift(sql), [], "group sends and deletes leave no drift");
      await sql`update unread_counters set unread = 2 where user_id = ${alice}`;
      const repaired = await reconcileOnce(sql);
      assert.deepEqual(repaired.map((r) => [r.peerId, r.expected, r.actual]), [[peer, 1, 2]]);
    });
  },
);

integrationTest(
  "a counted group send refreshes its group, sender and named members; so does an earlier version's outbox reply",
  async (env) => {
    await withCountersDatabase(env, async (sql) => {
      const [group, alice, bob, carol, peer] = [uuid(), uuid(), uuid(), uuid(), uuid()];
      const results = [
        await applyMessageSent(sql, groupSent(group, alice, [bob, carol, alice])),
        await applyMessageSent(sql, messageSentData({ recipientId: peer })),
      ];
      const expected = [
        `group:${group}`,
        `user:${alice}`,
        `user:${bob}`,
        `user:${carol}`,
        `user:${peer}`,
      ].toSorted();
      assert.deepEqual(results.flatMap((r) => r.keys).toSorted(), expected);
      // Rows an earlier version left in the outbox are refreshed by the relay's hook (a drain).
      await enqueueEvents(sql, results.map((r) => r.reply));
      const refreshed: string[][] = [];
      const refresh = refreshBeforeReplies((keys) => {
        refreshed.push(keys);
        return Promise.resolve();
      }, sql);
      const events = await sql<{ payload: never }[]>`select payload from outbox`;
      await refresh(events.map((e) => e.payload));
      assert.deepEqual(refreshed.map((k) => k.toSorted()), [expected]);
    });
  },
);

/** Every row of the counters tables as text, to count what a change wrote. */
async function snapshot(sql: Sql): Promise<Set<string>> {
  const rows = await sql<{ row: string }[]>`
    select 'ledger' || l::text as row from ledger l
    union all select 'unread' || c::text from unread_counters c
    union all select 'version' || v::text from counter_versions v
    union all select 'group' || g::text from group_counters g
    union all select 'message' || m::text from group_messages m
    union all select 'mention' || m::text from group_mentions m
    union all select 'member' || m::text from group_members m
    union all select 'mute' || d::text from dialog_mutes d
    union all select 'outbox' || o::text from outbox o`; // none: replies are published, not written
  return new Set(rows.map((r) => r.row));
}

/** Rows `change` inserted or updated in the counters tables. */
async function rowsWritten(sql: Sql, change: () => Promise<unknown>): Promise<number> {
  const before = await snapshot(sql);
  await change();
  return [...await snapshot(sql)].filter((row) => !before.has(row)).length;
}

integrationTest(
  "a message to a 10,000-member group writes as many rows as one to a 2-member group",
  async (env) => {
    await withCountersDatabase(env, async (sql) => {
      const [small, large, alice, bob] = [uuid(), uuid(), uuid(), uuid()];
      const crowd = Array.from({ length: 9_998 }, uuid);
      await join(sql, small, [alice, bob]);
      await join(sql, large, [alice, bob, ...crowd]);
      for (const group of [small, large]) await applyMessageSent(sql, groupSent(group, alice));
      const inSmall = await rowsWritten(
        sql,
        () => applyMessageSent(sql, groupSent(small, alice, [bob], true)),
      );
      const inLarge = await rowsWritten(
        sql,
        () => applyMessageSent(sql, groupSent(large, alice, [bob], true)),
      );
      assert.equal(inLarge, inSmall);
      assert.equal(inSmall, rowsWrittenPerGroupMessage(1));
      assert.equal(
        await rowsWritten(
          sql,
          () => applyMessageSent(sql, groupSent(large, bob, crowd.slice(0, 3))),
        ),
        rowsWrittenPerGroupMessage(3),
      );
      const [body] = await bodies(sql, [crowd[0]!]);
      assert.deepEqual(body!.groups[large], { unread: 3, mentions: 2 });
    });
  },
);
