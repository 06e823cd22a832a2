import assert from "node:assert/strict";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { headers as natsHeaders } from "@nats-io/nats-core";
import {
  EventConsumer,
  type EventConsumerOptions,
  type HandlerContext,
  PermanentEventError,
  retryDelayMs,
} from "./consumer.ts";
import { type Envelope, subjectFor } from "./events.ts";
import {
  ACK_WAIT_MS,
  consumerConfig,
  ensureConsumer,
  ensureStreams,
  streamNames,
} from "./jetstream.ts";
import { createLogger } from "./log.ts";
import { messageSentEvent } from "../testing/fixtures.ts";
import { integrationTest, type TestEnv, waitFor } from "../testing/env.ts";

async function setup(
  env: TestEnv,
  handler: (e: Envelope, ctx: HandlerContext) => Promise<void>,
  options:
    & Pick<EventConsumerOptions, "maxDeliveries" | "onOutcome" | "handlerTimeoutMs">
    & { ackWaitMs?: number } = {},
) {
  const nc = await env.nats();
  const names = streamNames(env.stream, env.prefix);
  await ensureStreams(nc, names);
  const cfg = consumerConfig(names, "counters");
  if (options.ackWaitMs) cfg.ack_wait = options.ackWaitMs * 1_000_000;
  await ensureConsumer(nc, names.stream, cfg);
  const js = jetstream(nc);
  const consumer = new EventConsumer({
    js,
    stream: names.stream,
    durable: cfg.durable_name,
    prefix: names.prefix,
    log: createLogger("test", "debug", env.logSink),
    handler,
    maxDeliveries: options.maxDeliveries,
    onOutcome: options.onOutcome,
    handlerTimeoutMs: options.handlerTimeoutMs,
  });
  const publish = (subject: string, data: string | Uint8Array, msgID?: string) => {
    const h = natsHeaders();
    h.set("X-Request-ID", "req-test");
    return js.publish(subject, data, { msgID, headers: h });
  };
  return { nc, js, names, cfg, consumer, publish };
}

Deno.test("retryDelayMs() doubles from 250 ms and stops at 30 s", () => {
  assert.deepEqual([1, 2, 3, 4].map(retryDelayMs), [250, 500, 1000, 2000]);
  assert.equal(retryDelayMs(50), 30_000);
});

integrationTest(
  "EventConsumer dead-letters a malformed message and goes on with the next good one",
  async (env) => {
    const handled: string[] = [];
    const { nc, names, consumer, publish } = await setup(env, (e) => {
      handled.push(e.id);
      return Promise.resolve();
    });
    try {
      consumer.start();
      await publish(subjectFor(env.prefix, "dialogs.message.sent"), "{not json");
      const good = messageSentEvent();
      await publish(subjectFor(env.prefix, "dialogs.message.sent"), JSON.stringify(good), good.id);
      await waitFor(() => handled.includes(good.id), { what: "the good event" });
      const jsm = await jetstreamManager(nc);
      const dead = await waitFor(
        () => jsm.streams.getMessage(names.deadLetterStream, { seq: 1 }).catch(() => null),
        { what: "the dead letter" },
      );
      assert.equal(new TextDecoder().decode(dead.data), "{not json");
      assert.match(dead.header.get("Dead-Letter-Reason"), /not valid JSON/);
      assert.equal(dead.header.get("Dead-Letter-Subject"), `${env.prefix}.dialogs.message.sent`);
      assert.equal(dead.header.get("X-Request-ID"), "req-test", "original headers are kept");
      assert.deepEqual(handled, [good.id]);
    } finally {
      await consumer.stop();
    }
  },
);

integrationTest(
  "EventConsumer dead-letters what the handler calls permanent, with its reason",
  async (env) => {
    const { nc, names, cfg, consumer, publish } = await setup(env, () => {
      throw new PermanentEventError("cannot ever apply this");
    });
    try {
      consumer.start();
      const e = messageSentEvent();
      await publish(subjectFor(env.prefix, "dialogs.message.sent"), JSON.stringify(e), e.id);
      const jsm = await jetstreamManager(nc);
      const dead = await waitFor(
        () => jsm.streams.getMessage(names.deadLetterStream, { seq: 1 }).catch(() => null),
        { what: "the dead letter" },
      );
      assert.equal(dead.header.get("Dead-Letter-Reason"), "cannot ever apply this");
      await waitFor(async () => {
        const info = await jsm.consumers.info(names.stream, cfg.durable_name);
        return info.num_ack_pending === 0 && info.num_pending === 0;
      }, { what: "the message to be terminated" });
    } finally {
      await consumer.stop();
    }
  },
);

integrationTest(
  "EventConsumer redelivers after a transient failure and acks once the handler succeeds",
  async (env) => {
    let attempts = 0;
    const { nc, names, cfg, consumer, publish } = await setup(env, () => {
      attempts++;
      if (attempts < 3) return Promise.reject(new Error("database is down"));
      return Promise.resolve();
    });
    try {
      consumer.start();
      const e = messageSentEvent();
      await publish(subjectFor(env.prefix, "dialogs.message.sent"), JSON.stringify(e), e.id);
      await waitFor(() => attempts >= 3, { what: "three attempts" });
      const jsm = await jetstreamManager(nc);
      await waitFor(
        async () =>
          (await jsm.consumers.info(names.stream, cfg.durable_name)).num_ack_pending === 0,
        {
          what: "the ack",
        },
      );
      const dlq = await jsm.streams.info(names.deadLetterStream);
      assert.equal(dlq.state.messages, 0, "a transient failure is never dead-lettered");
    } finally {
      await consumer.stop();
    }
  },
);

integrationTest(
  "EventConsumer keeps a message whose handler outlasts ack_wait: no redelivery while it works",
  async (env) => {
    const deliveries: number[] = [];
    const { nc, names, cfg, consumer, publish } = await setup(env, async (_e, ctx) => {
      deliveries.push(ctx.deliveryCount);
      // Three ack waits long; the in-progress acks are what keep the message here.
      await new Promise((r) => setTimeout(r, 3_000));
    }, { ackWaitMs: 1_000 });
    try {
      consumer.start();
      const e = messageSentEvent();
      await publish(subjectFor(env.prefix, "dialogs.message.sent"), JSON.stringify(e), e.id);
      const jsm = await jetstreamManager(nc);
      await waitFor(async () => {
        const info = await jsm.consumers.info(names.stream, cfg.durable_name);
        return info.num_ack_pending === 0 && info.delivered.stream_seq === 1;
      }, { what: "the ack", timeoutMs: 15_000 });
      assert.deepEqual(deliveries, [1], "handled once, never redelivered");
      const info = await jsm.consumers.info(names.stream, cfg.durable_name);
      assert.equal(info.num_redelivered, 0);
    } finally {
      await consumer.stop();
    }
  },
);

integrationTest(
  "EventConsumer: a message held by a consumer process killed with SIGKILL is redelivered to " +
    "another consumer within about ack_wait",
  async (env) => {
    const redelivered: { id: string; count: number; at: number }[] = [];
    const { names, cfg, consumer, publish } = await setup(env, (e, ctx) => {
      redelivered.push({ id: e.id, count: ctx.deliveryCount, at: Date.now() });
      return Promise.resolve();
    });
    const held = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("../testing/held_consumer.ts", import.meta.url).pathname,
        env.natsUrl,
        names.stream,
        cfg.durable_name,
        names.prefix,
      ],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    let killed = false;
    try {
      const e = messageSentEvent();
      await publish(subjectFor(env.prefix, "dialogs.message.sent"), JSON.stringify(e), e.id);
      let out = "";
      const reading = (async () => {
        for await (const chunk of held.stdout.pipeThrough(new TextDecoderStream())) out += chunk;
      })();
      await waitFor(() => out.includes(`holding ${e.id}`), {
        what: "the holder to take the event",
      });
      // The other consumer runs beside the holder for two ack waits and gets nothing, and the
      // holder is not handed it again: its in-progress acks keep the message with it while it lives.
      consumer.start();
      await new Promise((r) => setTimeout(r, 2 * ACK_WAIT_MS));
      assert.equal(redelivered.length, 0, "not redelivered while the holder is alive");
      assert.equal(out.split("holding").length - 1, 1, "the holder took it once");
      held.kill("SIGKILL");
      killed = true;
      const killedAt = Date.now();
      await held.status;
      await reading;
      const got = await waitFor(() => redelivered.find((r) => r.id === e.id), {
        what: "the redelivery",
        timeoutMs: 20_000,
      });
      assert.ok(got.count >= 2, "a redelivery");
      // A generous bound: well inside the 8 s saga timeout the chaos run uses.
      assert.ok(got.at - killedAt < 8_000, `redelivered ${got.at - killedAt} ms after the kill`);
    } finally {
      if (!killed) held.kill("SIGKILL");
      await held.status;
      await consumer.stop();
    }
  },
);

integrationTest(
  "EventConsumer dead-letters an event still failing after maxDeliveries with its last error, " +
    "while the events behind it are processed",
  async (env) => {
    const poison = messageSentEvent();
    const good = Array.from({ length: 5 }, () => messageSentEvent());
    let attempts = 0;
    const outcomes: string[] = [];
    const { nc, names, consumer, publish } = await setup(env, (e) => {
      if (e.id !== poison.id) return Promise.resolve();
      attempts++;
      return Promise.reject(new Error(`database refused attempt ${attempts}`));
    }, {
      maxDeliveries: 4,
      onOutcome: (outcome, e) => outcomes.push(`${outcome} ${e?.id}`),
    });
    try {
      consumer.start();
      const subject = subjectFor(env.prefix, "dialogs.message.sent");
      await publish(subject, JSON.stringify(poison), poison.id);
      for (const e of good) await publish(subject, JSON.stringify(e), e.id);
      const jsm = await jetstreamManager(nc);
      const dead = await waitFor(
        () => jsm.streams.getMessage(names.deadLetterStream, { seq: 1 }).catch(() => null),
        { what: "the dead letter", timeoutMs: 20_000 },
      );
      assert.equal(
        dead.header.get("Dead-Letter-Reason"),
        "failed 4 deliveries; last error: database refused attempt 4",
      );
      assert.equal(JSON.parse(new TextDecoder().decode(dead.data)).id, poison.id);
      assert.equal(attempts, 4, "delivered exactly the budget");
      const deadAt = outcomes.indexOf(`dead_lettered ${poison.id}`);
      for (const e of good) {
        const at = outcomes.indexOf(`processed ${e.id}`);
        assert.ok(at >= 0 && at < deadAt, "processed while the poison was still being retried");
      }
    } finally {
      await consumer.stop();
    }
  },
);

Deno.test("EventConsumer refuses a retry budget below one delivery", () => {
  assert.throws(
    () =>
      new EventConsumer({
        // deno-lint-ignore no-explicit-any
        js: {} as any,
        stream: "S",
        durable: "d",
        prefix: "p",
        log: createLogger("test", "error", () => {}),
        handler: () => Promise.resolve(),
        maxDeliveries: 0,
      }),
    /maxDeliveries must be at least 1, got 0/,
  );
});

integrationTest(
  "EventConsumer: a handler that never finishes counts as a failed delivery after its timeout, " +
    "so the event is redelivered and reaches the dead letters at the budget, and nothing waits on it",
  async (env) => {
    const stuck = messageSentEvent(), other = messageSentEvent();
    const deliveries: string[] = [];
    const outcomes: string[] = [];
    const { consumer, publish, names, nc } = await setup(
      env,
      (e) => {
        deliveries.push(e.id);
        // The stuck event's handler waits on a promise that never settles.
        return e.id === stuck.id ? new Promise<void>(() => {}) : Promise.resolve();
      },
      {
        handlerTimeoutMs: 300,
        maxDeliveries: 2,
        onOutcome: (outcome, e) => void (e?.id === stuck.id && outcomes.push(outcome)),
      },
    );
    consumer.start();
    try {
      const subject = subjectFor(env.prefix, "dialogs.message.sent");
      await publish(subject, JSON.stringify(stuck), stuck.id);
      await publish(subject, JSON.stringify(other), other.id);
      await waitFor(() => deliveries.includes(other.id), { what: "the other event, meanwhile" });
      await waitFor(() => outcomes.includes("dead_lettered"), {
        what: "the stuck event dead-lettered",
      });
      assert.deepEqual(outcomes, ["retried", "dead_lettered"]);
      assert.equal(deliveries.filter((id) => id === stuck.id).length, 2, "delivered twice");
      const jsm = await jetstreamManager(nc);
      const dead = await jsm.streams.getMessage(names.deadLetterStream, { seq: 1 });
      assert.ok(dead, "in the dead letters");
      assert.match(dead.header.get("Dead-Letter-Reason"), /did not finish within 300 ms/);
    } finally {
      await consumer.stop();
    }
  },
);
