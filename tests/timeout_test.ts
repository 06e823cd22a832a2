/** Saga timeouts: a send counters never answers is failed and cancelled, and counters ends right. */
import assert from "node:assert/strict";
import { integrationTest, type Service, waitFor } from "../testing/env.ts";
import { countersOf, send, statusOf, waitForStatus, withNoGroups } from "../testing/clients.ts";

integrationTest(
  "saga timeout: with counters stopped the send fails; when counters returns, its counter is right",
  async (env) => {
    const dialogs = await env.startDialogs({ overrides: { SAGA_TIMEOUT_MS: 300 } });
    const a = crypto.randomUUID(), b = crypto.randomUUID();
    const sent = await send(dialogs, a, b, "nobody counts me", { "X-Request-ID": "trace-timeout" });
    await waitForStatus(dialogs, a, sent.body.messageId, "failed");
    assert.ok(
      env.logs.some((l) =>
        l.msg === "send timed out; failed and cancelled" && l.requestId === "trace-timeout"
      ),
    );

    // counters now gets "sent" and the cancel, handled side by side: either it counts the send
    // and the cancel undoes it, or the cancel comes first and the send then changes nothing.
    const counters = await env.startCounters();
    await waitFor(
      () =>
        env.logs.some((l) => l.msg === "send cancelled" && l.result !== "nothing") &&
        env.logs.some((l) => l.msg === "message counted"),
      { what: "counters to apply the send and its cancel" },
    );
    assert.deepEqual(await countersOf(counters, b), withNoGroups({ total: 0, dialogs: {} }));
    assert.equal(
      await statusOf(dialogs, a, sent.body.messageId),
      "failed",
      "a late reply never flips it",
    );
    assert.equal(await statusOf(dialogs, b, sent.body.messageId), undefined, "never visible to b");

    const next = await send(dialogs, a, b, "counted");
    await waitForStatus(dialogs, a, next.body.messageId, "committed");
    assert.deepEqual(
      await countersOf(counters, b),
      withNoGroups({ total: 1, dialogs: { [a]: 1 } }),
    );
  },
);

integrationTest(
  "saga timeout: a cancel that reaches counters before its send makes the send change nothing",
  async (env) => {
    const dialogs = await env.startDialogs({ overrides: { SAGA_TIMEOUT_MS: 300 } });
    const a = crypto.randomUUID(), b = crypto.randomUUID();
    const sent = await send(dialogs, a, b);
    await waitForStatus(dialogs, a, sent.body.messageId, "failed");
    // Drop the "sent" event from the stream so counters sees only the cancel, then redeliver the send.
    const nc = await env.nats();
    const { jetstreamManager } = await import("@nats-io/jetstream");
    const jsm = await jetstreamManager(nc);
    const sentMsg = (await jsm.streams.getMessage(env.stream, { seq: 1 }))!;
    assert.equal(sentMsg.subject, `${env.prefix}.dialogs.message.sent`);
    await jsm.streams.deleteMessage(env.stream, 1);

    const counters = await env.startCounters();
    await waitFor(
      () => env.logs.some((l) => l.msg === "send cancelled" && l.result === "remembered"),
      {
        what: "the cancel to be remembered",
      },
    );
    const { jetstream } = await import("@nats-io/jetstream");
    await jetstream(nc).publish(sentMsg.subject, sentMsg.data, { msgID: crypto.randomUUID() });
    await waitFor(
      () => env.logs.some((l) => l.msg === "message counted" && l.redelivery === true),
      {
        what: "the late send",
      },
    );
    assert.deepEqual(await countersOf(counters, b), withNoGroups({ total: 0, dialogs: {} }));
    assert.equal(await statusOf(dialogs, a, sent.body.messageId), "failed");
  },
);

integrationTest(
  "saga timeout: a send that commits in time is never failed by the sweeper",
  async (env) => {
    const dialogs = await env.startDialogs({ overrides: { SAGA_TIMEOUT_MS: 2_000 } });
    const counters = await env.startCounters();
    const a = crypto.randomUUID(), b = crypto.randomUUID();
    const sent = await send(dialogs, a, b);
    await waitForStatus(dialogs, a, sent.body.messageId, "committed");
    await new Promise((r) => setTimeout(r, 2_500));
    assert.equal(await statusOf(dialogs, a, sent.body.messageId), "committed");
    assert.equal((await countersOf(counters, b)).total, 1);
  },
);

integrationTest(
  "saga timeout: a count that reaches dialogs after the timeout fails the message and is taken back",
  async (env) => {
    const dialogs = await env.startDialogs({ overrides: { SAGA_TIMEOUT_MS: 500 } });
    const a = crypto.randomUUID(), b = crypto.randomUUID();
    const sent = await send(dialogs, a, b, "counted too late", { "X-Request-ID": "trace-late" });
    const sql = env.sql("dialogs");
    const database = new URL(env.dialogsDatabaseUrl).pathname.slice(1);
    // Holding the message's row keeps the sweeper (SKIP LOCKED) off it, so only the late reply
    // can decide it; the reply waits for the row and gets it the moment this transaction ends.
    let counters: Service | undefined;
    await sql.begin(async (tx) => {
      await tx`select id from messages where id = ${sent.body.messageId} for update`;
      await new Promise((r) => setTimeout(r, 600));
      counters = await env.startCounters();
      await waitFor(
        async () => {
          const [row] = await sql<{ n: number }[]>`
            select count(*)::int as n from pg_stat_activity
            where datname = ${database} and wait_event_type = 'Lock'`;
          return row!.n > 0;
        },
        { what: "counters' reply to wait for the message row" },
      );
    });

    await waitForStatus(dialogs, a, sent.body.messageId, "failed");
    assert.ok(
      env.logs.some((l) => l.msg === "reply came after the saga timeout; failed and cancelled"),
      "the reply, not the sweeper, failed it",
    );
    assert.ok(!env.logs.some((l) => l.msg === "send timed out; failed and cancelled"));
    await waitFor(
      () => env.logs.some((l) => l.msg === "send cancelled" && l.result === "undone"),
      { what: "counters to take the increment back" },
    );
    await waitFor(async () => (await countersOf(counters!, b)).total === 0, {
      what: "b's counter back to 0",
    });
    assert.deepEqual(await countersOf(counters!, b), withNoGroups({ total: 0, dialogs: {} }));
    assert.equal(await statusOf(dialogs, b, sent.body.messageId), undefined, "never visible to b");
  },
);
