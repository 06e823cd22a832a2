/** Dead letters: a poison event lands in the DLQ with its reason; after a fix, replay applies it once. */
import assert from "node:assert/strict";
import { headers as natsHeaders } from "@nats-io/nats-core";
import { createEvent, type Envelope, subjectFor } from "../shared/events.ts";
import { integrationTest, jetstream, type Service, type TestEnv, waitFor } from "../testing/env.ts";
import { countersOf, statusOf } from "../testing/clients.ts";
import { messageSentData } from "../testing/fixtures.ts";
import { fullCountersOf } from "../testing/group_clients.ts";

async function dlq(env: TestEnv, ...args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["task", "-q", "dlq", ...args],
    cwd: new URL("../", import.meta.url).pathname,
    env: {
      NO_COLOR: "1",
      NATS_URL: env.natsUrl,
      // NATS_STREAM unset: the script derives env.stream from the prefix, as the services do.
      NATS_SUBJECT_PREFIX: env.prefix,
    },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
}

async function metric(url: string, pattern: RegExp): Promise<number> {
  const text = await fetch(`${url}/metrics`).then((r) => r.text());
  const line = text.split("\n").find((l) => pattern.test(l));
  return line ? Number(line.slice(line.lastIndexOf(" ") + 1)) : 0;
}

integrationTest(
  "dead letters: a poison reply is dead-lettered, counted, listed, and replayed once after the fix",
  async (env) => {
    const dialogs = await env.startDialogs();
    const a = crypto.randomUUID(), b = crypto.randomUUID();
    const messageId = crypto.randomUUID(), transactionId = crypto.randomUUID();
    // A reply for a transaction dialogs does not know (say, its row was lost and is restored later).
    const reply = createEvent("counters.message.counted", {
      transactionId,
      messageId,
      outcome: "counted",
    }, {
      requestId: "trace-poison",
    });
    const h = natsHeaders();
    h.set("X-Request-ID", "trace-poison");
    const nc = await env.nats();
    await jetstream(nc).publish(`${env.prefix}.counters.message.counted`, JSON.stringify(reply), {
      msgID: reply.id,
      headers: h,
    });
    await waitFor(async () => (await metric(dialogs.url, /^saga_dead_letters /)) === 1, {
      what: "the dead letter",
    });
    assert.equal(
      await metric(dialogs.url, /^saga_events_consumed_total\{outcome="dead_lettered"/),
      1,
    );

    const listed = await dlq(env, "list");
    assert.equal(listed.code, 0, listed.stderr);
    const [line] = listed.stdout.trim().split("\n");
    const letter = JSON.parse(line!);
    assert.equal(letter.subject, `${env.prefix}.counters.message.counted`);
    assert.match(letter.reason, new RegExp(`no message has transaction ${transactionId}`));
    assert.equal(letter.requestId, "trace-poison", "the original headers are kept");
    assert.match(listed.stdout, /1 dead letter\(s\)/);

    // The fix: the message row is restored.
    await env.sql("dialogs")`
    insert into messages (id, transaction_id, sender_id, recipient_id, text)
    values (${messageId}, ${transactionId}, ${a}, ${b}, 'restored')`;
    const replayed = await dlq(env, "replay", "--all");
    assert.equal(replayed.code, 0, replayed.stderr);
    assert.match(replayed.stdout, /replayed 1 of 1/);
    await waitFor(async () => (await statusOf(dialogs, a, messageId)) === "committed", {
      what: "committed",
    });
    assert.equal(await metric(dialogs.url, /^saga_outcomes_total\{status="committed"\}/), 1);

    const again = await dlq(env, "replay", String(letter.seq));
    assert.equal(again.code, 1, "a replayed letter is gone");
    assert.match(again.stderr, /no dead letter/);
    assert.match((await dlq(env, "list")).stdout, /0 dead letter\(s\)/);
    assert.equal(
      await metric(dialogs.url, /^saga_outcomes_total\{status="committed"\}/),
      1,
      "applied once",
    );
    assert.equal(await metric(dialogs.url, /^saga_dead_letters /), 0);
  },
);

Deno.test("deno task dlq explains its usage on bad arguments", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["task", "-q", "dlq", "replay", "x"],
    cwd: new URL("../", import.meta.url).pathname,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 2);
  assert.match(new TextDecoder().decode(out.stderr), /usage: deno task dlq/);
});

/** Publishes a dialogs event as dialogs' relay would; `msgID` differs for a redelivered copy. */
async function publishEvent(env: TestEnv, event: Envelope, msgID = event.id) {
  const nc = await env.nats();
  await jetstream(nc).publish(subjectFor(env.prefix, event.type), JSON.stringify(event), { msgID });
}

/** Makes counters' ledger refuse every row of `userId` until the returned function is called. */
async function refuseLedgerRows(env: TestEnv, userId: string): Promise<() => Promise<void>> {
  const sql = env.sql("counters");
  await sql.unsafe(`
    create function refuse_for_test() returns trigger language plpgsql as $$
    begin
      if new.user_id = '${userId}' then
        raise exception 'injected fault: the ledger refuses a % row', new.kind;
      end if;
      return new;
    end $$`);
  await sql.unsafe(`create trigger refuse_for_test before insert on ledger
                    for each row execute function refuse_for_test()`);
  return async () => {
    await sql.unsafe(`drop trigger refuse_for_test on ledger`);
    await sql.unsafe(`drop function refuse_for_test()`);
  };
}

/** The dead letter of `event`, once there; asserts it is the only one. */
async function deadLetterOf(env: TestEnv, event: Envelope) {
  return await waitFor(async () => {
    const listed = await dlq(env, "list");
    assert.equal(listed.code, 0, listed.stderr);
    const letters = listed.stdout.trim().split("\n").slice(0, -1).map((l) => JSON.parse(l));
    assert.ok(letters.length <= 1, listed.stdout);
    return letters.find((l) => JSON.parse(l.data).id === event.id);
  }, { what: "the dead letter", timeoutMs: 20_000 });
}

async function unread(counters: Service, user: string, peer: string) {
  return (await countersOf(counters, user)).dialogs[peer] ?? 0;
}

/** Counts a send from `sender` to `recipient` through the saga's event, without dialogs. */
async function countSend(env: TestEnv, counters: Service, sender: string, recipient: string) {
  const sent = createEvent(
    "dialogs.message.sent",
    messageSentData({ senderId: sender, recipientId: recipient }),
  );
  const before = await unread(counters, recipient, sender);
  await publishEvent(env, sent);
  await waitFor(async () => (await unread(counters, recipient, sender)) === before + 1, {
    what: "the send to be counted",
  });
  return sent;
}

const applied = (type: string, outcome: string) =>
  new RegExp(
    `^counters_events_applied_total\\{.*type="${type}".*outcome="${outcome}"|` +
      `^counters_events_applied_total\\{.*outcome="${outcome}".*type="${type}"`,
  );

integrationTest(
  "dead letters: a read that still fails after the retry budget is dead-lettered with its last " +
    "error, and applies exactly once however often it is replayed or redelivered",
  async (env) => {
    const counters = await env.startCounters({ overrides: { EVENT_RETRY_BUDGET: 3 } });
    const reader = crypto.randomUUID(), peer = crypto.randomUUID();
    for (let i = 0; i < 3; i++) await countSend(env, counters, peer, reader);
    const allow = await refuseLedgerRows(env, reader);
    const read = createEvent("dialogs.messages.read", {
      transactionId: crypto.randomUUID(),
      readerId: reader,
      peerId: peer,
      count: 2,
      readAt: new Date().toISOString(),
    });
    await publishEvent(env, read);
    const letter = await deadLetterOf(env, read);
    assert.equal(
      letter.reason,
      "failed 3 deliveries; last error: injected fault: the ledger refuses a read row",
    );
    assert.equal(await unread(counters, reader, peer), 3, "nothing applied");

    await allow();
    const replayed = await dlq(env, "replay", "--all");
    assert.equal(replayed.code, 0, replayed.stderr);
    await waitFor(async () => (await unread(counters, reader, peer)) === 1, { what: "the read" });

    // The same read again, past JetStream's duplicate window (a second replay, a redelivery).
    await publishEvent(env, read, `${read.id}-again`);
    await waitFor(
      async () => (await metric(counters.url, applied(read.type, "duplicate"))) === 1,
      { what: "the copy to be seen as a duplicate" },
    );
    const again = await dlq(env, "replay", String(letter.seq));
    assert.equal(again.code, 1, "a replayed letter is gone");
    assert.equal(await unread(counters, reader, peer), 1, "applied once");
    assert.equal(await metric(counters.url, applied(read.type, "applied")), 1);
  },
);

integrationTest(
  "dead letters: a cancel that still fails after the retry budget is dead-lettered, and a replay " +
    "undoes the count exactly once",
  async (env) => {
    const counters = await env.startCounters({ overrides: { EVENT_RETRY_BUDGET: 3 } });
    const sender = crypto.randomUUID(), recipient = crypto.randomUUID();
    const sent = await countSend(env, counters, sender, recipient);
    await countSend(env, counters, sender, recipient);
    const allow = await refuseLedgerRows(env, recipient);
    const cancel = createEvent("dialogs.message.cancelled", {
      transactionId: sent.data.transactionId,
      messageId: sent.data.messageId,
      senderId: sender,
      recipientId: recipient,
      reason: "the saga timed out",
    });
    await publishEvent(env, cancel);
    const letter = await deadLetterOf(env, cancel);
    assert.equal(
      letter.reason,
      "failed 3 deliveries; last error: injected fault: the ledger refuses a send row",
    );
    assert.equal(await unread(counters, recipient, sender), 2, "nothing undone yet");

    await allow();
    const replayed = await dlq(env, "replay", String(letter.seq));
    assert.equal(replayed.code, 0, replayed.stderr);
    await waitFor(async () => (await unread(counters, recipient, sender)) === 1, {
      what: "the cancel",
    });
    await publishEvent(env, cancel, `${cancel.id}-again`);
    await waitFor(
      async () => (await metric(counters.url, applied(cancel.type, "nothing"))) === 1,
      { what: "the copy to change nothing" },
    );
    assert.equal(await unread(counters, recipient, sender), 1, "undone once");
    assert.equal(await metric(counters.url, applied(cancel.type, "undone")), 1);
  },
);

/** Makes counters refuse rows of `table` for `groupId` until the returned function is called. */
async function refuseGroupRows(
  env: TestEnv,
  table: "group_members" | "group_messages",
  groupId: string,
): Promise<() => Promise<void>> {
  const sql = env.sql("counters");
  const name = `refuse_${table}`;
  await sql.unsafe(`
    create function ${name}() returns trigger language plpgsql as $$
    begin
      if new.group_id = '${groupId}' then
        raise exception 'injected fault: ${table} refuses group %', new.group_id;
      end if;
      return new;
    end $$`);
  await sql.unsafe(`create trigger ${name} before insert or update on ${table}
                    for each row execute function ${name}()`);
  return async () => {
    await sql.unsafe(`drop trigger ${name} on ${table}`);
    await sql.unsafe(`drop function ${name}()`);
  };
}

integrationTest(
  "dead letters: a group members change and a group send that still fail after the retry budget " +
    "are dead-lettered, and a replay applies each exactly once",
  async (env) => {
    const counters = await env.startCounters({ overrides: { EVENT_RETRY_BUDGET: 3 } });
    const sql = env.sql("counters");
    const groupId = crypto.randomUUID(), a = crypto.randomUUID(), b = crypto.randomUUID();
    const member = (userId: string) => ({
      userId,
      member: true,
      joinedSeq: 0,
      readSeq: 0,
      muted: false,
      version: 1,
    });
    const members = createEvent("dialogs.group.members.changed", {
      groupId,
      members: [member(a), member(b)],
    });
    const allowMembers = await refuseGroupRows(env, "group_members", groupId);
    await publishEvent(env, members);
    const membersLetter = await deadLetterOf(env, members);
    assert.match(membersLetter.reason, /^failed 3 deliveries; last error: injected fault/);
    assert.equal((await sql`select 1 from group_members where group_id = ${groupId}`).length, 0);
    await allowMembers();
    assert.equal((await dlq(env, "replay", String(membersLetter.seq))).code, 0);
    await waitFor(
      async () =>
        (await sql`select 1 from group_members where group_id = ${groupId} and member`).length ===
          2,
      { what: "the members" },
    );

    const sent = createEvent("dialogs.group.message.sent", {
      transactionId: crypto.randomUUID(),
      messageId: crypto.randomUUID(),
      groupId,
      senderId: a,
      mentions: [b],
      mentionsAll: false,
      sentAt: new Date().toISOString(),
    });
    const allowSends = await refuseGroupRows(env, "group_messages", groupId);
    await publishEvent(env, sent);
    const sentLetter = await deadLetterOf(env, sent);
    // The batch's pipelined transaction may report the statement after the fault ("current
    // transaction is aborted") as the last error.
    assert.match(sentLetter.reason, /^failed 3 deliveries; last error: /);
    const counted = async () => {
      const [row] = await sql`select
        (select count(*)::int from group_messages where group_id = ${groupId}) as messages,
        (select coalesce(max(last_seq), 0)::int from group_counters where group_id = ${groupId})
          as last_seq,
        (select count(*)::int from group_mentions where group_id = ${groupId}) as mentions,
        (select count(*)::int from ledger where transaction_id = ${sent.data.transactionId})
          as ledger`;
      return row!;
    };
    assert.deepEqual({ ...await counted() }, { messages: 0, last_seq: 0, mentions: 0, ledger: 0 });

    await allowSends();
    assert.equal((await dlq(env, "replay", "--all")).code, 0);
    await waitFor(async () => (await counted()).messages === 1, { what: "the group send" });
    await publishEvent(env, sent, `${sent.id}-again`);
    await waitFor(
      async () => (await metric(counters.url, applied(sent.type, "duplicate"))) === 1,
      { what: "the copy to be seen as a duplicate" },
    );
    assert.deepEqual({ ...await counted() }, { messages: 1, last_seq: 1, mentions: 1, ledger: 1 });
    assert.equal((await dlq(env, "replay", String(sentLetter.seq))).code, 1, "gone once replayed");
    assert.match((await dlq(env, "list")).stdout, /0 dead letter\(s\)/);
    const served = await waitFor(async () => {
      const g = (await fullCountersOf(counters, b)).groups?.[groupId];
      return g?.unread === 1 && g;
    }, { what: "b's group count" });
    assert.deepEqual(served, { unread: 1, mentions: 1 }, "counted once for b");
  },
);
