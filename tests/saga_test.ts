/** The send saga end to end over HTTP, with both services, Postgres, Redis and NATS all real. */
import assert from "node:assert/strict";
import { jetstreamManager } from "@nats-io/jetstream";
import { headers as natsHeaders } from "@nats-io/nats-core";
import { bearer, call, integrationTest, jetstream, type TestEnv, waitFor } from "../testing/env.ts";
import { countersOf, send, statusOf, waitForStatus, withNoGroups } from "../testing/clients.ts";

const alice = () => crypto.randomUUID();
const counters = countersOf;

async function startBoth(env: TestEnv) {
  return { dialogs: await env.startDialogs(), counters: await env.startCounters() };
}

integrationTest(
  "send saga: a sent message ends committed and the recipient's counter counts it",
  async (env) => {
    const s = await startBoth(env);
    const a = alice(), b = alice();
    const sent = await send(s.dialogs, a, b, "hi Bob", { "X-Request-ID": "trace-send-1" });
    assert.equal(sent.body.status, "pending");
    assert.match(sent.body.messageId, /^[0-9a-f-]{36}$/);
    assert.match(sent.body.transactionId, /^[0-9a-f-]{36}$/);
    assert.equal(sent.headers.get("X-Request-ID"), "trace-send-1");

    await waitForStatus(s.dialogs, a, sent.body.messageId, "committed");
    // Read-your-saga: committed means the counter already includes it.
    assert.deepEqual(
      await counters(s.counters, b),
      withNoGroups({ total: 1, dialogs: { [a]: 1 } }),
    );
    assert.deepEqual(await counters(s.counters, a), withNoGroups({ total: 0, dialogs: {} }));
    const one = await call(`${s.counters.url}/api/counters/${a}`, { auth: await bearer(b) });
    assert.deepEqual(one.body, { peerId: a, unread: 1 });

    const asRecipient = await call(`${s.dialogs.url}/api/messages/${sent.body.messageId}`, {
      auth: await bearer(b),
    });
    assert.equal(asRecipient.status, 200);
    assert.deepEqual(
      { ...asRecipient.body, createdAt: undefined },
      {
        id: sent.body.messageId,
        from: a,
        to: b,
        text: "hi Bob",
        status: "committed",
        createdAt: undefined,
        readAt: null,
      },
    );

    const dialogsMetrics = await fetch(`${s.dialogs.url}/metrics`).then((r) => r.text());
    assert.match(dialogsMetrics, /\nsaga_outcomes_total\{status="committed"\} 1\n/);
    assert.match(dialogsMetrics, /\nsaga_send_to_terminal_seconds_count\{status="committed"\} 1\n/);
    assert.match(dialogsMetrics, /\noutbox_backlog 0\n/);
    // Once it serves from memory (every other instance knows it), reads are answered there.
    await waitFor(async () =>
      /\ncounters_cache_memory_serving 1\n/.test(
        await fetch(`${s.counters.url}/metrics`).then((r) => r.text()),
      ), { what: "counters serving from memory" });
    assert.deepEqual(
      await counters(s.counters, b),
      withNoGroups({ total: 1, dialogs: { [a]: 1 } }),
    );
    const countersMetrics = await fetch(`${s.counters.url}/metrics`).then((r) => r.text());
    assert.match(countersMetrics, /\nsaga_consumer_pending 0\n/);
    assert.match(countersMetrics, /\nsaga_consumer_ack_pending 0\n/);
    assert.match(countersMetrics, /\ncounters_cache_lookups_total\{result="local"\} \d+\n/);
    assert.match(
      countersMetrics,
      /\nsaga_events_consumed_total\{outcome="processed",type="dialogs.message.sent"\} 1\n/,
    );

    // One request id finds the whole story in both services' logs.
    const traced = env.logs.filter((l) => l.requestId === "trace-send-1");
    assert.ok(traced.some((l) => l.service === "dialogs" && l.msg === "request"));
    assert.ok(traced.some((l) => l.service === "counters" && l.msg === "message counted"));
    assert.ok(traced.some((l) => l.service === "dialogs" && l.msg === "saga finished"));
  },
);

integrationTest(
  "send saga: a CHECK constraint in counters makes the send end failed and compensated",
  async (env) => {
    const s = await startBoth(env);
    await env.sql(
      "counters",
    )`alter table unread_counters add constraint unread_max check (unread <= 1)`;
    const a = alice(), b = alice();
    const first = await send(s.dialogs, a, b, "one");
    await waitForStatus(s.dialogs, a, first.body.messageId, "committed");
    const second = await send(s.dialogs, a, b, "two");
    await waitForStatus(s.dialogs, a, second.body.messageId, "failed");

    assert.deepEqual(
      await counters(s.counters, b),
      withNoGroups({ total: 1, dialogs: { [a]: 1 } }),
    );
    const hidden = await call(`${s.dialogs.url}/api/messages/${second.body.messageId}`, {
      auth: await bearer(b),
    });
    assert.equal(hidden.status, 404, "a failed message is never visible to the recipient");
    const list = await call(`${s.dialogs.url}/api/dialog/${a}/list`, { auth: await bearer(b) });
    assert.deepEqual(list.body.messages.map((m: { text: string }) => m.text), ["one"]);
    const senderList = await call(`${s.dialogs.url}/api/dialog/${b}/list`, {
      auth: await bearer(a),
    });
    assert.deepEqual(
      senderList.body.messages.map((m: { text: string; status: string }) => [m.text, m.status]),
      [["two", "failed"], ["one", "committed"]],
    );
  },
);

integrationTest(
  "send saga: the same 'message sent' delivered twice under different msg ids is counted once",
  async (env) => {
    const s = await startBoth(env);
    const a = alice(), b = alice();
    const sent = await send(s.dialogs, a, b);
    await waitForStatus(s.dialogs, a, sent.body.messageId, "committed");

    const nc = await env.nats();
    const jsm = await jetstreamManager(nc);
    const original = (await jsm.streams.getMessage(env.stream, { seq: 1 }))!;
    assert.equal(original.subject, `${env.prefix}.dialogs.message.sent`);
    const h = natsHeaders();
    h.set("X-Request-ID", "trace-duplicate");
    await jetstream(nc).publish(original.subject, original.data, {
      msgID: crypto.randomUUID(),
      headers: h,
    });

    await waitFor(
      () => env.logs.some((l) => l.requestId === "trace-duplicate" && l.msg === "message counted"),
      { what: "counters to see the duplicate" },
    );
    const dup = env.logs.find((l) =>
      l.requestId === "trace-duplicate" && l.msg === "message counted"
    )!;
    assert.equal(dup.redelivery, true);
    assert.deepEqual(
      await counters(s.counters, b),
      withNoGroups({ total: 1, dialogs: { [a]: 1 } }),
    );
    assert.equal(await statusOf(s.dialogs, a, sent.body.messageId), "committed");
  },
);

integrationTest(
  "send saga: dialogs dying between its commit and the publish loses nothing",
  async (env) => {
    const crashed = await env.startDialogs({ relay: false });
    const countersService = await env.startCounters();
    const a = alice(), b = alice();
    const sent = await send(crashed, a, b, "survives the crash");
    await crashed.stop();
    const dialogsSql = env.sql("dialogs");
    const [outbox] = await dialogsSql`select count(*)::int as n from outbox`;
    assert.equal(outbox!.n, 0, "a dialog send writes no outbox row");
    const [row] = await dialogsSql<{ status: string; republished_at: Date | null }[]>`
      select status, republished_at from messages where id = ${sent.body.messageId}`;
    assert.deepEqual(row, { status: "pending", republished_at: null }, "the message is the record");

    const restarted = await env.startDialogs();
    const started = Date.now();
    await waitForStatus(restarted, a, sent.body.messageId, "committed");
    assert.deepEqual(
      await counters(countersService, b),
      withNoGroups({ total: 1, dialogs: { [a]: 1 } }),
    );
    const [republished] = await dialogsSql<{ at: Date }[]>`
      select republished_at as at from messages where id = ${sent.body.messageId}`;
    assert.ok(republished!.at, "republished by the restarted instance's sweeper");
    assert.ok(Date.now() - started < 10_000);
    const metrics = await fetch(`${restarted.url}/metrics`).then((r) => r.text());
    assert.match(metrics, /\ndialogs_sends_republished_total 1\n/);
    // Published once (the sweeper's republish), counted once.
    const stream = await (await jetstreamManager(await env.nats())).streams.info(env.stream);
    assert.equal(stream.state.messages, 2, "the send and counters' reply");
  },
);

integrationTest(
  "send saga: a malformed event goes to the dead-letter stream and the next send still commits",
  async (env) => {
    const s = await startBoth(env);
    const nc = await env.nats();
    await jetstream(nc).publish(`${env.prefix}.dialogs.message.sent`, '{"id":"garbage"}');
    const a = alice(), b = alice();
    const sent = await send(s.dialogs, a, b);
    await waitForStatus(s.dialogs, a, sent.body.messageId, "committed");
    const jsm = await jetstreamManager(nc);
    const dlq = await waitFor(async () => {
      const info = await jsm.streams.info(`${env.stream}_DLQ`);
      return info.state.messages === 1 ? info : null;
    }, { what: "one dead letter" });
    assert.equal(dlq.state.messages, 1);
    const dead = (await jsm.streams.getMessage(`${env.stream}_DLQ`, { seq: 1 }))!;
    assert.match(dead.header.get("Dead-Letter-Reason"), /id/);
    assert.deepEqual(
      await counters(s.counters, b),
      withNoGroups({ total: 1, dialogs: { [a]: 1 } }),
    );
  },
);

integrationTest(
  "send saga: while the counters database is down the send stays pending, then commits",
  async (env) => {
    const s = await startBoth(env);
    const admin = env.sql("dialogs");
    const countersDb = new URL(env.countersDatabaseUrl).pathname.slice(1);
    await admin.unsafe(`alter database "${countersDb}" allow_connections false`);
    await admin`select pg_terminate_backend(pid) from pg_stat_activity where datname = ${countersDb}`;
    const a = alice(), b = alice();
    const sent = await send(s.dialogs, a, b);
    await waitFor(
      () =>
        env.logs.some((l) =>
          l.service === "counters" && l.msg === "event failed; will be redelivered"
        ),
      { what: "counters to fail transiently" },
    );
    assert.equal(await statusOf(s.dialogs, a, sent.body.messageId), "pending", "never failed");
    await admin.unsafe(`alter database "${countersDb}" allow_connections true`);
    await waitForStatus(s.dialogs, a, sent.body.messageId, "committed");
    assert.deepEqual(
      await counters(s.counters, b),
      withNoGroups({ total: 1, dialogs: { [a]: 1 } }),
    );
  },
);

integrationTest(
  "send saga: many concurrent sends all finish and every counter equals the committed messages",
  async (env) => {
    const s = await startBoth(env);
    const users = Array.from({ length: 5 }, alice);
    const sends: Promise<{ to: string; from: string; id: string }>[] = [];
    for (let i = 0; i < 60; i++) {
      const from = users[i % users.length]!;
      const to = users[(i * 7 + 1) % users.length]!;
      if (from === to) continue;
      sends.push(
        send(s.dialogs, from, to, `m${i}`).then((r) => ({ from, to, id: r.body.messageId })),
      );
    }
    const done = await Promise.all(sends);
    for (const m of done) await waitForStatus(s.dialogs, m.from, m.id, "committed");
    for (const user of users) {
      const expected: Record<string, number> = {};
      for (const m of done.filter((m) => m.to === user)) {
        expected[m.from] = (expected[m.from] ?? 0) + 1;
      }
      const got = await counters(s.counters, user);
      assert.deepEqual(got.dialogs, expected, `counters of ${user}`);
    }
  },
);

integrationTest(
  "send saga: a burst of sends, group-committed, keeps each request's id and one message per key",
  async (env) => {
    const s = await startBoth(env);
    const [a, b, c] = [alice(), alice(), alice()];
    // Sent together, they reach dialogs while earlier ones are being stored, so they share batches.
    const keyed = Array.from(
      { length: 4 },
      (_, i) =>
        send(s.dialogs, a, b, "keyed", {
          "Idempotency-Key": "burst",
          "X-Request-ID": `keyed-${i}`,
        }),
    );
    const plain = Array.from(
      { length: 16 },
      (_, i) => send(s.dialogs, i % 2 ? a : c, b, `plain ${i}`, { "X-Request-ID": `plain-${i}` }),
    );
    const keyedIds = new Set((await Promise.all(keyed)).map((r) => r.body.messageId));
    assert.equal(keyedIds.size, 1, "one message for the key");
    const plainSent = await Promise.all(plain);
    const all = [...keyedIds, ...plainSent.map((r) => r.body.messageId)];
    assert.equal(new Set(all).size, 17);
    for (const [i, r] of plainSent.entries()) {
      await waitForStatus(s.dialogs, i % 2 ? a : c, r.body.messageId, "committed");
    }
    await waitForStatus(s.dialogs, a, [...keyedIds][0]!, "committed");
    assert.deepEqual(
      await counters(s.counters, b),
      withNoGroups({ total: 17, dialogs: { [a]: 9, [c]: 8 } }),
    );
    // Each plain send's request id reached counters with its own event.
    const counted = env.logs.filter((l) => l.service === "counters" && l.msg === "message counted");
    for (let i = 0; i < 16; i++) {
      assert.equal(counted.filter((l) => l.requestId === `plain-${i}`).length, 1, `plain-${i}`);
    }
    const keyedCounted = counted.filter((l) => String(l.requestId).startsWith("keyed-"));
    assert.equal(keyedCounted.length, 1, "the key's message counted once");
  },
);
