import assert from "node:assert/strict";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { headers as natsHeaders } from "@nats-io/nats-core";
import {
  EventConsumer,
  type HandlerContext,
  PermanentEventError,
  retryDelayMs,
} from "./consumer.ts";
import { type Envelope, subjectFor } from "./events.ts";
import { consumerConfig, ensureConsumer, ensureStreams, streamNames } from "./jetstream.ts";
import { createLogger } from "./log.ts";
import { messageSentEvent } from "../testing/fixtures.ts";
import { integrationTest, type TestEnv, waitFor } from "../testing/env.ts";

async function setup(env: TestEnv, handler: (e: Envelope, ctx: HandlerContext) => Promise<void>) {
  const nc = await env.nats();
  const names = streamNames(env.stream, env.prefix);
  await ensureStreams(nc, names);
  const cfg = consumerConfig(names, "counters");
  await ensureConsumer(nc, names.stream, cfg);
  const js = jetstream(nc);
  const consumer = new EventConsumer({
    js,
    stream: names.stream,
    durable: cfg.durable_name,
    prefix: names.prefix,
    log: createLogger("test", "debug", env.logSink),
    handler,
  });
  const publish = (subject: string, data: string | Uint8Array, msgID?: string) => {
    const h = natsHeaders();
    h.set("X-Request-ID", "req-test");
    return js.publish(subject, data, { msgID, headers: h });
  };
  return { nc, js, names, consumer, publish };
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
    const { nc, names, consumer, publish } = await setup(env, () => {
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
        const info = await jsm.consumers.info(names.stream, "counters");
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
    const { nc, names, consumer, publish } = await setup(env, () => {
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
        async () => (await jsm.consumers.info(names.stream, "counters")).num_ack_pending === 0,
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
