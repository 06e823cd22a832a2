import assert from "node:assert/strict";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { Sql } from "../shared/db.ts";
import type { EventData } from "../shared/events.ts";
import { ensureStreams, streamNames } from "../shared/jetstream.ts";
import { createLogger } from "../shared/log.ts";
import { OutboxRelay } from "../shared/outbox.ts";
import type { MessageStatus } from "./messages.ts";
import {
  applyCountedReplies,
  type MessageStore,
  postgresMessageStore,
  republishStaleSends,
  type SendInput,
  sendMessage,
  sweepTimedOutSends,
  type TimedOutSend,
} from "./message_store.ts";
import { TIMEOUT_REASON } from "./saga.ts";
import { createGroup, sendGroupMessage } from "./group_store.ts";
import { integrationTest, migratedDatabase, type TestEnv, waitFor } from "../testing/env.ts";
import { memoryMessageStore } from "../testing/memory_store.ts";

async function withDialogs(env: TestEnv, fn: (sql: Sql) => Promise<void>): Promise<void> {
  const sql = await migratedDatabase(env.dialogsDatabaseUrl, "dialogs");
  try {
    await fn(sql);
  } finally {
    await sql.end();
  }
}

async function pendingSend(sql: Sql) {
  const { message } = await sendMessage(sql, {
    senderId: crypto.randomUUID(),
    recipientId: crypto.randomUUID(),
    text: "hi",
  });
  return message;
}

const TIMEOUT_MS = 60_000;

const reply = (
  transactionId: string,
  outcome: "counted" | "failed",
  reason?: string,
): EventData<"counters.message.counted"> => ({
  transactionId,
  messageId: crypto.randomUUID(),
  outcome,
  ...(reason ? { reason } : {}),
});

integrationTest(
  "applyCountedReplies() finishes each pending message of a batch, once, and knows no stranger",
  async (env) => {
    await withDialogs(env, async (sql) => {
      const [a, b] = [await pendingSend(sql), await pendingSend(sql)];
      const results = await applyCountedReplies(sql, [
        reply(a.transaction_id, "counted"),
        reply(b.transaction_id, "failed", "refused"),
        reply(a.transaction_id, "failed"),
        reply(crypto.randomUUID(), "counted"),
      ], TIMEOUT_MS);
      assert.deepEqual(results.map((r) => "status" in r ? [r.kind, r.status] : r.kind), [
        ["applied", "committed"],
        ["applied", "failed"],
        ["ignored", "committed"],
        "unknown",
      ]);
      const rows = await sql<{ id: string; status: string; failure_reason: string | null }[]>`
        select id, status, failure_reason from messages where finished_at is not null order by status`;
      assert.deepEqual(rows.map((r) => [r.id, r.status, r.failure_reason]), [
        [a.id, "committed", null],
        [b.id, "failed", "refused"],
      ]);
    });
  },
);

integrationTest(
  "applyCountedReplies() leaves a finished message as it is when a late reply arrives",
  async (env) => {
    await withDialogs(env, async (sql) => {
      const m = await pendingSend(sql);
      await applyCountedReplies(sql, [reply(m.transaction_id, "failed", "timed out")], TIMEOUT_MS);
      const [late] = await applyCountedReplies(
        sql,
        [reply(m.transaction_id, "counted")],
        TIMEOUT_MS,
      );
      assert.deepEqual(late, { kind: "ignored", status: "failed", messageId: m.id });
      const [row] = await sql`select status from messages where id = ${m.id}`;
      assert.equal(row!.status, "failed");
    });
  },
);

/** The cancel events in the outbox, by message id. */
async function cancelsInOutbox(sql: Sql) {
  const rows = await sql<
    { type: string; payload: { data: { messageId: string; reason: string } } }[]
  >`
    select type, payload from outbox where type = 'dialogs.message.cancelled'`;
  return rows.map((r) => r.payload.data);
}

/** Inserts `n` sends pending since `ageMs` ago, in one statement. */
async function pendingBacklog(sql: Sql, n: number, ageMs: number): Promise<void> {
  await sql`
    insert into messages (id, transaction_id, sender_id, recipient_id, text, created_at)
    select gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), 'hi',
           now() - make_interval(secs => ${ageMs / 1000})
    from generate_series(1, ${n})`;
}

integrationTest(
  "applyCountedReplies() fails a message counted after the timeout and writes its cancel at once",
  async (env) => {
    await withDialogs(env, async (sql) => {
      const [late, lateRefused, inTime] = [
        await pendingSend(sql),
        await pendingSend(sql),
        await pendingSend(sql),
      ];
      await sql`update messages set created_at = now() - interval '10 seconds'
                where id in (${late.id}, ${lateRefused.id})`;
      const results = await applyCountedReplies(sql, [
        reply(late.transaction_id, "counted"),
        reply(lateRefused.transaction_id, "failed", "refused"),
        reply(inTime.transaction_id, "counted"),
      ], 5_000);
      assert.deepEqual(
        results.map((r) => r.kind === "applied" ? [r.messageId, r.status, r.timedOut] : r.kind),
        [
          [late.id, "failed", true],
          [lateRefused.id, "failed", false],
          [inTime.id, "committed", false],
        ],
      );
      const rows = await sql<{ id: string; status: string; failure_reason: string | null }[]>`
        select id, status, failure_reason from messages`;
      const byId = new Map(rows.map((r) => [r.id, [r.status, r.failure_reason]]));
      assert.deepEqual(byId.get(late.id), ["failed", TIMEOUT_REASON]);
      assert.deepEqual(byId.get(lateRefused.id), ["failed", "refused"]);
      assert.deepEqual(byId.get(inTime.id), ["committed", null]);
      // Only the count counters reported is taken back; the refusal counted nothing.
      assert.deepEqual(await cancelsInOutbox(sql), [{
        transactionId: late.transaction_id,
        messageId: late.id,
        senderId: late.sender_id,
        recipientId: late.recipient_id,
        reason: TIMEOUT_REASON,
      }]);
      // A repeat of the late reply changes nothing and cancels nothing more.
      const [again] = await applyCountedReplies(
        sql,
        [reply(late.transaction_id, "counted")],
        5_000,
      );
      assert.deepEqual(again, { kind: "ignored", status: "failed", messageId: late.id });
      assert.equal((await cancelsInOutbox(sql)).length, 1);
    });
  },
);

integrationTest(
  "sweepTimedOutSends() clears a backlog of more than one batch in one tick",
  async (env) => {
    await withDialogs(env, async (sql) => {
      await pendingBacklog(sql, 250, 60_000);
      await pendingBacklog(sql, 3, 0);
      const batches: TimedOutSend[][] = [];
      const failed = await sweepTimedOutSends(sql, 30_000, {
        batchSize: 100,
        onBatch: (b) => batches.push(b),
      });
      assert.equal(failed, 250);
      assert.deepEqual(batches.map((b) => b.length), [100, 100, 50]);
      const [counts] = await sql<{ pending: number; failed: number }[]>`
        select count(*) filter (where status = 'pending')::int as pending,
               count(*) filter (where status = 'failed' and failure_reason = ${TIMEOUT_REASON})::int
                 as failed
        from messages`;
      assert.deepEqual(counts, { pending: 3, failed: 250 }, "the recent sends are left pending");
      const cancels = await cancelsInOutbox(sql);
      assert.equal(new Set(cancels.map((c) => c.messageId)).size, 250);
    });
  },
);

integrationTest(
  "sweepTimedOutSends() on several instances at once fails and cancels each send once",
  async (env) => {
    await withDialogs(env, async (sql) => {
      const other = await migratedDatabase(env.dialogsDatabaseUrl, "dialogs");
      try {
        await pendingBacklog(sql, 150, 60_000);
        const seen: string[] = [];
        const onBatch = (b: TimedOutSend[]) => seen.push(...b.map((m) => m.id));
        const counts = await Promise.all([
          sweepTimedOutSends(sql, 30_000, { batchSize: 20, onBatch }),
          sweepTimedOutSends(other, 30_000, { batchSize: 20, onBatch }),
        ]);
        assert.equal(counts[0]! + counts[1]!, 150);
        assert.equal(new Set(seen).size, 150, "no send failed by both");
        const cancels = await cancelsInOutbox(sql);
        assert.equal(cancels.length, 150);
        assert.equal(new Set(cancels.map((c) => c.messageId)).size, 150);
        const [left] = await sql<{ n: number }[]>`
          select count(*)::int as n from messages where status = 'pending'`;
        assert.equal(left!.n, 0);
      } finally {
        await other.end();
      }
    });
  },
);

/** A "message sent" event as JetStream stored it. */
interface PublishedSend {
  msgId: string;
  request_id: string | null;
  payload: {
    id: string;
    occurredAt: string;
    requestId?: string;
    traceparent?: string;
    data: { messageId: string; transactionId: string };
  };
}

/**
 * Starts a relay of this process on `sql`, publishing to the test's stream; `published(n)` waits
 * for `n` events on the stream (and a moment for any more), then returns the "message sent" ones
 * by message id. Every dialog send's event goes out through such a relay, never an outbox row.
 */
async function withRelay(env: TestEnv, sql: Sql) {
  const nc = await env.nats();
  const names = streamNames(env.stream, env.prefix);
  await ensureStreams(nc, names);
  const log = createLogger("test", "debug", env.logSink);
  const relay = new OutboxRelay({ sql, js: jetstream(nc), log, prefix: env.prefix });
  await relay.start();
  const jsm = await jetstreamManager(nc);
  const count = async () => (await jsm.streams.info(names.stream)).state.messages;
  const published = async (n: number): Promise<Map<string, PublishedSend>> => {
    await waitFor(async () => await count() >= n, { what: `${n} events published` });
    await new Promise((r) => setTimeout(r, 200));
    const events = new Map<string, PublishedSend>();
    const total = await count();
    for (let seq = 1; seq <= total; seq++) {
      const m = (await jsm.streams.getMessage(names.stream, { seq }))!;
      if (!m.subject.endsWith(".dialogs.message.sent")) continue;
      const payload = m.json<PublishedSend["payload"]>();
      events.set(payload.data.messageId, {
        msgId: m.header.get("Nats-Msg-Id"),
        request_id: m.header.get("X-Request-ID") || null,
        payload,
      });
    }
    return events;
  };
  return { relay, published, count };
}

/** The number of rows in the outbox, sent or not. */
async function outboxRows(sql: Sql): Promise<number> {
  const [{ n }] = await sql<[{ n: number }]>`select count(*)::int as n from outbox`;
  return n;
}

/**
 * Sends `inputs` through the store's group commit in one batch: a first send is being stored while
 * they arrive, so they wait and go together. Their outcomes, in order, and the first send's.
 */
async function oneBatch(store: MessageStore, inputs: SendInput[]) {
  const first = store.sendMessage({
    senderId: crypto.randomUUID(),
    recipientId: crypto.randomUUID(),
    text: "first",
  });
  const outcomes = await Promise.allSettled(inputs.map((i) => store.sendMessage(i)));
  return { first: await first, outcomes };
}

/** The id of the transaction that wrote each message (its xmin). */
async function writers(sql: Sql, ids: string[]): Promise<Set<string>> {
  const rows = await sql<{ xmin: string }[]>`
    select xmin::text from messages where id = any(${ids}::uuid[])`;
  return new Set(rows.map((r) => r.xmin));
}

integrationTest(
  "group-committed sends: concurrent sends share one transaction, each with its own message and event",
  async (env) => {
    await withDialogs(env, async (sql) => {
      const { relay, published } = await withRelay(env, sql);
      const store = postgresMessageStore(sql);
      const inputs = Array.from({ length: 5 }, (_, i) => ({
        senderId: crypto.randomUUID(),
        recipientId: crypto.randomUUID(),
        text: `batched ${i}`,
        requestId: `req-${i}`,
      }));
      const { first, outcomes } = await oneBatch(store, inputs);
      const results = outcomes.map((o) => {
        assert.equal(o.status, "fulfilled");
        return o.value;
      });
      const ids = results.map((r) => r.message.id);
      assert.equal(new Set(ids).size, 5);
      assert.equal(new Set(results.map((r) => r.message.transaction_id)).size, 5);
      results.forEach((r, i) => {
        assert.equal(r.created, true);
        assert.equal(r.message.status, "pending");
        assert.equal(r.message.text, `batched ${i}`);
        assert.equal(r.message.sender_id, inputs[i]!.senderId);
        assert.equal(r.message.recipient_id, inputs[i]!.recipientId);
      });
      assert.equal((await writers(sql, ids)).size, 1, "the five in one transaction");
      assert.notDeepEqual(await writers(sql, [first.message.id]), await writers(sql, ids));
      const events = await published(6);
      await relay.stop();
      assert.equal(events.size, 6, "one event per message");
      assert.equal(await outboxRows(sql), 0, "no outbox row");
      results.forEach((r, i) => {
        const event = events.get(r.message.id)!;
        assert.equal(event.payload.data.transactionId, r.message.transaction_id);
        assert.equal(event.msgId, r.message.id, "the message's id is the event's id");
        assert.equal(event.payload.id, r.message.id);
        assert.equal(event.payload.occurredAt, r.message.created_at.toISOString());
        assert.equal(event.request_id, `req-${i}`);
        assert.equal(event.payload.requestId, `req-${i}`);
      });
      const rows = await sql<{ id: string; request_id: string }[]>`
        select id, request_id from messages where id = any(${ids}::uuid[])`;
      assert.deepEqual(
        new Map(rows.map((r) => [r.id, r.request_id])),
        new Map(ids.map((id, i) => [id, `req-${i}`])),
      );
    });
  },
);

integrationTest(
  "group-committed sends: one Idempotency-Key twice in a batch stores one message, the answer to both",
  async (env) => {
    await withDialogs(env, async (sql) => {
      const { relay, published } = await withRelay(env, sql);
      const store = postgresMessageStore(sql);
      const [a, b] = [crypto.randomUUID(), crypto.randomUUID()];
      const key = { senderId: a, recipientId: b, idempotencyKey: "same" };
      const { outcomes } = await oneBatch(store, [
        { ...key, text: "once" },
        { senderId: a, recipientId: b, text: "no key" },
        { ...key, text: "once" },
      ]);
      const [one, other, again] = outcomes.map((o) => {
        assert.equal(o.status, "fulfilled");
        return o.value;
      });
      assert.deepEqual(again!.message, one!.message);
      assert.deepEqual([one!.created, again!.created], [true, false]);
      assert.equal(other!.created, true);
      assert.equal(
        (await writers(sql, [one!.message.id, other!.message.id])).size,
        1,
        "one batch",
      );
      const [{ n }] = await sql<[{ n: number }]>`
        select count(*)::int as n from messages where sender_id = ${a}`;
      assert.equal(n, 2);
      const events = await published(3);
      assert.ok(events.has(one!.message.id) && events.has(other!.message.id));
      assert.equal(events.size, 3, "no event for the replay");
      // A later batch replaying the key, beside a new send, is answered from the database.
      const later = await oneBatch(store, [{ ...key, text: "once" }, { ...key, text: "once" }]);
      for (const o of later.outcomes) {
        assert.equal(o.status, "fulfilled");
        assert.deepEqual(o.value, { message: one!.message, created: false });
      }
      assert.equal((await published(4)).size, 4, "only the later first send's event");
      await relay.stop();
      assert.equal(await outboxRows(sql), 0, "no outbox row");
    });
  },
);

integrationTest(
  "group-committed sends: a send the database refuses fails alone; the rest of its batch is stored",
  async (env) => {
    await withDialogs(env, async (sql) => {
      const { relay, published } = await withRelay(env, sql);
      const store = postgresMessageStore(sql);
      const send = (text: string, recipientId: string = crypto.randomUUID()) => ({
        senderId: crypto.randomUUID(),
        recipientId,
        text,
      });
      // Postgres refuses a NUL in text (22021) and a recipient that is not a UUID (22P02).
      const { outcomes } = await oneBatch(store, [
        send("fine 1"),
        send("nul \u0000 inside"),
        send("fine 2"),
        send("bad recipient", "not-a-uuid"),
        send("fine 3"),
      ]);
      assert.deepEqual(outcomes.map((o) => o.status), [
        "fulfilled",
        "rejected",
        "fulfilled",
        "rejected",
        "fulfilled",
      ]);
      assert.equal((outcomes[1] as PromiseRejectedResult).reason.code, "22021");
      assert.equal((outcomes[3] as PromiseRejectedResult).reason.code, "22P02");
      const stored = outcomes.flatMap((o) => o.status === "fulfilled" ? [o.value.message] : []);
      const rows = await sql<{ text: string }[]>`
        select text from messages where text <> 'first' order by text`;
      assert.deepEqual(rows.map((r) => r.text), ["fine 1", "fine 2", "fine 3"]);
      const events = await published(4);
      await relay.stop();
      for (const m of stored) assert.ok(events.has(m.id), `an event for ${m.text}`);
      assert.equal(events.size, 4);
    });
  },
);

integrationTest(
  "a dialog send committed with no relay in its process is republished after the delay, once per interval",
  async (env) => {
    await withDialogs(env, async (sql) => {
      // No relay on this pool: the send commits and its event goes nowhere.
      const lost = await pendingSend(sql);
      assert.equal(await outboxRows(sql), 0, "a dialog send writes no outbox row");
      // A pending group message has its outbox row: never republished from the message.
      const owner = crypto.randomUUID();
      const group = await createGroup(sql, {
        ownerId: owner,
        title: "g",
        members: [crypto.randomUUID()],
      });
      await sendGroupMessage(sql, { senderId: owner, groupId: group.id, text: "g", mentions: [] });
      await sql`delete from outbox`;
      assert.equal(await republishStaleSends(sql, 300), 0, "no relay here: nothing republished");
      const [untouched] = await sql<{ republished_at: Date | null }[]>`
        select republished_at from messages where id = ${lost.id}`;
      assert.equal(untouched!.republished_at, null);

      // Two instances, each with its relay.
      const other = await migratedDatabase(env.dialogsDatabaseUrl, "dialogs");
      try {
        const mine = await withRelay(env, sql);
        const theirs = await withRelay(env, other);
        assert.deepEqual(
          await Promise.all([republishStaleSends(sql, 300), republishStaleSends(other, 300)]),
          [0, 0],
          "too young",
        );
        await new Promise((r) => setTimeout(r, 350));
        const first = await Promise.all([
          republishStaleSends(sql, 300),
          republishStaleSends(other, 300),
        ]);
        assert.equal(first[0]! + first[1]!, 1, "republished by one instance only");
        const events = await mine.published(1);
        assert.equal(events.get(lost.id)?.msgId, lost.id);
        assert.equal(events.get(lost.id)?.payload.data.transactionId, lost.transaction_id);
        assert.deepEqual(
          await Promise.all([republishStaleSends(sql, 300), republishStaleSends(other, 300)]),
          [0, 0],
          "not again within the interval",
        );
        // Still pending after the interval (which grew with the message's age): republished
        // again, and JetStream drops the repeat.
        await new Promise((r) => setTimeout(r, 800));
        assert.equal(await republishStaleSends(other, 300), 1);
        await new Promise((r) => setTimeout(r, 500));
        assert.equal(await mine.count(), 1, "the repeat was deduplicated");
        // A finished message is never republished.
        await applyCountedReplies(sql, [reply(lost.transaction_id, "counted")], TIMEOUT_MS);
        await new Promise((r) => setTimeout(r, 350));
        assert.equal(await republishStaleSends(sql, 300), 0);
        await mine.relay.stop();
        await theirs.relay.stop();
        assert.equal(await outboxRows(sql), 0, "no outbox row at all");
      } finally {
        await other.end();
      }
    });
  },
);

Deno.test("sweepTimedOutSends() refuses a batch size that is not a positive integer", async () => {
  await assert.rejects(
    sweepTimedOutSends({} as Sql, 1_000, { batchSize: 0 }),
    /batchSize must be a positive integer, got 0/,
  );
});

// The contract of a MessageStore, run against Postgres and against the in-memory store the route
// tests use, so the two cannot drift apart.

/** A store under test and how to finish a message's saga in it. */
interface StoreUnderTest {
  store: MessageStore;
  setStatus: (id: string, status: MessageStatus) => Promise<void>;
}

/** Sends `texts` from `senderId` to `recipientId` one after the other; the stored messages. */
async function sendAll(
  store: MessageStore,
  senderId: string,
  recipientId: string,
  texts: string[],
) {
  const sent = [];
  for (const text of texts) {
    sent.push((await store.sendMessage({ senderId, recipientId, text })).message);
  }
  return sent;
}

const storeContract: [string, (t: StoreUnderTest) => Promise<void>][] = [
  [
    "sendMessage() with a used Idempotency-Key returns the first message and creates nothing",
    async ({ store }) => {
      const [a, b] = [crypto.randomUUID(), crypto.randomUUID()];
      const send = (text: string) =>
        store.sendMessage({ senderId: a, recipientId: b, text, idempotencyKey: "k" });
      const first = await send("once");
      const again = await send("other text");
      assert.equal(first.created, true);
      assert.equal(first.message.status, "pending");
      assert.deepEqual(again, { message: first.message, created: false });
      const other = await store.sendMessage({
        senderId: b,
        recipientId: a,
        text: "once",
        idempotencyKey: "k",
      });
      assert.equal(other.created, true, "another sender's key is another message");
      assert.deepEqual(await store.findMessage(first.message.id.toUpperCase()), first.message);
      assert.equal(await store.findMessage(crypto.randomUUID()), undefined);
    },
  ],
  [
    "listDialog() shows the sender every message and the recipient the committed, newest first, by pages",
    async ({ store, setStatus }) => {
      const [a, b] = [crypto.randomUUID(), crypto.randomUUID()];
      const sent = await sendAll(store, a, b, ["m0", "m1", "m2", "m3"]);
      await setStatus(sent[1]!.id, "committed");
      await setStatus(sent[3]!.id, "committed");
      const texts = (rows: { text: string }[]) => rows.map((r) => r.text);
      assert.deepEqual(texts(await store.listDialog(a, b, { limit: 10 })), [
        "m3",
        "m2",
        "m1",
        "m0",
      ]);
      assert.deepEqual(texts(await store.listDialog(b, a, { limit: 10 })), ["m3", "m1"]);
      const page = await store.listDialog(a, b, { limit: 2 });
      assert.deepEqual(texts(page), ["m3", "m2"]);
      const next = await store.listDialog(a, b, { limit: 2, before: page.at(-1) });
      assert.deepEqual(texts(next), ["m1", "m0"]);
    },
  ],
  [
    "listDialogs() lists each peer once with the last message the caller may see, most recent first",
    async ({ store, setStatus }) => {
      const [me, p1, p2] = [crypto.randomUUID(), crypto.randomUUID(), crypto.randomUUID()];
      await store.sendMessage({ senderId: me, recipientId: p1, text: "to p1" });
      await store.sendMessage({ senderId: me, recipientId: p2, text: "to p2" });
      const back = await store.sendMessage({ senderId: p1, recipientId: me, text: "from p1" });
      await store.sendMessage({ senderId: p2, recipientId: me, text: "pending from p2" });
      const summary = async (limit: number) =>
        (await store.listDialogs(me, limit)).map((d) => [d.peerId, d.lastMessage.text]);
      assert.deepEqual(await summary(10), [[p2, "to p2"], [p1, "to p1"]]);
      await setStatus(back.message.id, "committed");
      assert.deepEqual(await summary(10), [[p1, "from p1"], [p2, "to p2"]]);
      assert.deepEqual(await summary(1), [[p1, "from p1"]]);
    },
  ],
  [
    "markMessagesRead() reads the peer's committed unread messages up to upTo, each once",
    async ({ store, setStatus }) => {
      const [me, peer] = [crypto.randomUUID(), crypto.randomUUID()];
      const sent = await sendAll(store, peer, me, ["r0", "r1", "r2", "pending"]);
      for (const m of sent.slice(0, 3)) await setStatus(m.id, "committed");
      const upTo = await store.findMessage(sent[1]!.id);
      const first = await store.markMessagesRead({ readerId: me, peerId: peer, upTo });
      assert.equal(first.read, 2);
      assert.equal(typeof first.transactionId, "string");
      assert.deepEqual(await store.markMessagesRead({ readerId: me, peerId: peer, upTo }), {
        read: 0,
      });
      assert.equal((await store.markMessagesRead({ readerId: peer, peerId: me })).read, 0);
      assert.equal((await store.markMessagesRead({ readerId: me, peerId: peer })).read, 1);
      const listed = await store.listDialog(me, peer, { limit: 10 });
      assert.deepEqual(listed.map((m) => [m.text, m.read_at !== null]), [
        ["r2", true],
        ["r1", true],
        ["r0", true],
      ]);
    },
  ],
  [
    "group sends, lists, reads and deletes: members see committed ones, readSeq only moves forward",
    async ({ store, setStatus }) => {
      const [owner, bob, carol] = [crypto.randomUUID(), crypto.randomUUID(), crypto.randomUUID()];
      const group = await store.createGroup({ ownerId: owner, title: "t", members: [bob] });
      const send = async (text: string) => {
        const r = await store.sendGroupMessage({
          senderId: owner,
          groupId: group.id,
          text,
          mentions: [bob, "all"],
        });
        assert.ok(r.kind === "sent");
        return r.message;
      };
      const [g0, g1, g2] = [await send("g0"), await send("g1"), await send("g2")];
      await setStatus(g0.id, "committed");
      await setStatus(g2.id, "committed");
      await store.addMembers({ groupId: group.id, actorId: bob, userIds: [carol], maxMembers: 9 });
      assert.deepEqual((await store.findGroup(group.id, carol))?.me.joinedSeq, 2);
      const texts = async (user: string) =>
        (await store.listGroup(user, group.id, { limit: 10 })).map((m) => m.text);
      assert.deepEqual(await texts(owner), ["g2", "g1", "g0"]);
      assert.deepEqual(await texts(carol), ["g2", "g0"]);
      const committed = await store.findMessage(g2.id);
      assert.deepEqual([committed?.seq, committed?.mentions, committed?.mentions_all], [
        2,
        [bob],
        true,
      ]);
      assert.equal(await store.deleteMessage({ userId: owner, messageId: g1.id }), "conflict");
      assert.equal(await store.deleteMessage({ userId: owner, messageId: g0.id }), "deleted");
      assert.deepEqual(await texts(bob), ["g2"]);
      assert.deepEqual(await store.markGroupRead({ readerId: bob, groupId: group.id }), {
        read: 1,
        readSeq: 2,
      });
      assert.deepEqual(await store.markGroupRead({ readerId: carol, groupId: group.id }), {
        read: 0,
        readSeq: 2,
      });
      const summaries = await store.listGroupSummaries(carol, 5);
      assert.deepEqual(summaries.map((g) => [g.groupId, g.lastMessage?.text]), [[group.id, "g2"]]);
      assert.equal(
        await store.removeMember({ groupId: group.id, actorId: carol, userId: carol }),
        "removed",
      );
      assert.deepEqual(await store.listGroupSummaries(carol, 5), []);
    },
  ],
];

for (const [name, check] of storeContract) {
  Deno.test(`memoryMessageStore: ${name}`, async () => {
    const store = memoryMessageStore();
    await check({
      store,
      setStatus: (id, status) => Promise.resolve(store.setStatus(id, status)),
    });
  });
  integrationTest(`postgresMessageStore: ${name}`, async (env) => {
    await withDialogs(env, async (sql) => {
      await check({
        store: postgresMessageStore(sql),
        setStatus: async (id, status) => {
          const [row] = await sql<{ transaction_id: string; next: number | null }[]>`
            select transaction_id, (select last_committed_seq::int + 1 from groups g
                                    where g.id = m.group_id) as next
            from messages m where id = ${id}`;
          if (row?.next && status === "committed") {
            // A group message commits as counters' reply does, with the next seq.
            const reply = { transactionId: row.transaction_id, messageId: id, seq: row.next };
            await applyCountedReplies(sql, [{ ...reply, outcome: "counted" }], TIMEOUT_MS);
            return;
          }
          await sql`update messages set status = ${status} where id = ${id}`;
        },
      });
    });
  });
}
