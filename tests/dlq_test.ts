/** Dead letters: a poison event lands in the DLQ with its reason; after a fix, replay applies it once. */
import assert from "node:assert/strict";
import { headers as natsHeaders } from "@nats-io/nats-core";
import { createEvent, type Envelope, subjectFor } from "../shared/events.ts";
import { integrationTest, jetstream, type Service, type TestEnv, waitFor } from "../testing/env.ts";
import { countersOf, statusOf } from "../testing/clients.ts";
import { messageSentData } from "../testing/fixtures.ts";

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
