import assert from "node:assert/strict";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { ConfigError } from "./config.ts";
import { EventConsumer } from "./consumer.ts";
import { type Envelope, subjectFor } from "./events.ts";
import {
  consumerConfig,
  defaultStreamName,
  durableName,
  ensureConsumer,
  ensureStreams,
  isJetStreamApiError,
  JetStreamCodes,
  type StreamNames,
  streamNames,
} from "./jetstream.ts";
import { createLogger } from "./log.ts";
import { messageSentEvent } from "../testing/fixtures.ts";
import { integrationTest, type TestEnv, waitFor } from "../testing/env.ts";

Deno.test("streamNames() derives the stream from the prefix when NATS_STREAM is unset", () => {
  assert.equal(defaultStreamName("saga"), "SAGA");
  assert.deepEqual(streamNames(undefined, "saga"), {
    stream: "SAGA",
    deadLetterStream: "SAGA_DLQ",
    prefix: "saga",
  });
  assert.equal(streamNames(undefined, "acme.prod-1.saga").stream, "ACME_PROD-1_SAGA");
  assert.equal(streamNames("MINE", "acme.saga").deadLetterStream, "MINE_DLQ", "a given name wins");
});

Deno.test("streamNames() refuses a prefix too long to name a stream, asking for NATS_STREAM", () => {
  assert.throws(() => streamNames(undefined, "p".repeat(65)), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.match(err.message, /longer than 64 characters; set NATS_STREAM$/);
    return true;
  });
});

Deno.test("durableName() is the service and the prefix with dots as underscores", () => {
  assert.equal(durableName("saga", "counters"), "counters_saga");
  assert.equal(durableName("acme.saga", "dialogs"), "dialogs_acme_saga");
  assert.equal(
    consumerConfig(streamNames(undefined, "a.b"), "counters").durable_name,
    "counters_a_b",
  );
});

/** A deployment's stream names under the test's prefix; its streams are deleted by `cleanup`. */
function deployment(env: TestEnv, name: string, stream?: string): StreamNames {
  return streamNames(stream, `${env.prefix}.${name}`);
}

async function deleteStreams(nc: NatsConnection, ...all: StreamNames[]) {
  const jsm = await jetstreamManager(nc);
  for (const names of all) {
    for (const s of [names.stream, names.deadLetterStream]) {
      await jsm.streams.delete(s).catch(() => {});
    }
  }
}

async function startConsumer(env: TestEnv, nc: NatsConnection, names: StreamNames) {
  await ensureStreams(nc, names);
  const cfg = consumerConfig(names, "counters");
  await ensureConsumer(nc, names.stream, cfg);
  const seen: Envelope[] = [];
  const consumer = new EventConsumer({
    js: jetstream(nc),
    stream: names.stream,
    durable: cfg.durable_name,
    prefix: names.prefix,
    log: createLogger("test", "debug", env.logSink),
    handler: (e) => {
      seen.push(e);
      return Promise.resolve();
    },
  });
  consumer.start();
  return { seen, consumer, durable: cfg.durable_name };
}

integrationTest(
  "two deployments differing only in the prefix get their own streams and consumers and never " +
    "see each other's events",
  async (env) => {
    const nc = await env.nats();
    const a = deployment(env, "a"), b = deployment(env, "b");
    assert.notEqual(a.stream, b.stream);
    try {
      const ca = await startConsumer(env, nc, a);
      const cb = await startConsumer(env, nc, b);
      try {
        const jsm = await jetstreamManager(nc);
        assert.deepEqual((await jsm.streams.info(a.stream)).config.subjects, [`${a.prefix}.>`]);
        assert.deepEqual((await jsm.streams.info(b.stream)).config.subjects, [`${b.prefix}.>`]);
        assert.deepEqual((await jsm.streams.info(a.deadLetterStream)).config.subjects, [
          `${a.prefix}_dlq.>`,
        ]);
        assert.notEqual(ca.durable, cb.durable);
        // Starting again (another instance, a restart) changes nothing of the other deployment.
        await ensureStreams(nc, a);
        assert.deepEqual((await jsm.streams.info(b.stream)).config.subjects, [`${b.prefix}.>`]);

        const js = jetstream(nc);
        const forA = [messageSentEvent(), messageSentEvent()];
        const forB = [messageSentEvent(), messageSentEvent()];
        for (const e of forA) {
          await js.publish(subjectFor(a.prefix, e.type), JSON.stringify(e), { msgID: e.id });
        }
        for (const e of forB) {
          await js.publish(subjectFor(b.prefix, e.type), JSON.stringify(e), { msgID: e.id });
        }
        await waitFor(() => ca.seen.length >= 2 && cb.seen.length >= 2, { what: "both" });
        // A moment for a stray delivery to show up, if there were one.
        await new Promise((r) => setTimeout(r, 300));
        assert.deepEqual(ca.seen.map((e) => e.id).sort(), forA.map((e) => e.id).sort());
        assert.deepEqual(cb.seen.map((e) => e.id).sort(), forB.map((e) => e.id).sort());
      } finally {
        await ca.consumer.stop();
        await cb.consumer.stop();
      }
    } finally {
      await deleteStreams(nc, a, b);
    }
  },
);

integrationTest(
  "ensureStreams() refuses in one line a stream that holds another prefix's subjects, and " +
    "leaves it as it was",
  async (env) => {
    const nc = await env.nats();
    const a = deployment(env, "a");
    const intruder = deployment(env, "b", a.stream);
    try {
      await ensureStreams(nc, a);
      await assert.rejects(ensureStreams(nc, intruder), (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.equal(
          err.message,
          `NATS stream ${a.stream} holds subjects ["${a.prefix}.>"] of another deployment, ` +
            `not ["${intruder.prefix}.>"]: set NATS_STREAM to a stream of this deployment's own ` +
            `(or leave it unset) or NATS_SUBJECT_PREFIX to that stream's prefix`,
        );
        return true;
      });
      const jsm = await jetstreamManager(nc);
      assert.deepEqual((await jsm.streams.info(a.stream)).config.subjects, [`${a.prefix}.>`]);
    } finally {
      await deleteStreams(nc, a, intruder);
    }
  },
);

integrationTest(
  "ensureStreams() refuses a new stream whose subjects another stream already carries, naming it",
  async (env) => {
    const nc = await env.nats();
    const a = deployment(env, "a");
    const renamed = streamNames(`${a.stream}_OTHER`, a.prefix);
    try {
      await ensureStreams(nc, a);
      await assert.rejects(ensureStreams(nc, renamed), (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.equal(
          err.message,
          `NATS stream ${renamed.stream} cannot be created: its subjects ["${a.prefix}.>"] ` +
            `overlap those of stream ${a.stream}; set NATS_STREAM to ${a.stream} or ` +
            `NATS_SUBJECT_PREFIX to one no other deployment uses`,
        );
        return true;
      });
    } finally {
      await deleteStreams(nc, a, renamed);
    }
  },
);

integrationTest(
  "ensureStreams() and ensureConsumer() from several instances at once all succeed",
  async (env) => {
    const nc = await env.nats();
    const names = streamNames(env.stream, env.prefix);
    const cfg = consumerConfig(names, "dialogs");
    await Promise.all(Array.from({ length: 4 }, () => ensureStreams(nc, names)));
    await Promise.all(Array.from({ length: 4 }, () => ensureConsumer(nc, names.stream, cfg)));
    const jsm = await jetstreamManager(nc);
    const info = await jsm.consumers.info(names.stream, cfg.durable_name);
    assert.equal(info.config.ack_wait, cfg.ack_wait);
  },
);

integrationTest("isJetStreamApiError() tells the server's error codes apart", async (env) => {
  const nc = await env.nats();
  const jsm = await jetstreamManager(nc);
  const names = streamNames(env.stream, env.prefix);
  const missing = await jsm.streams.info(names.stream).catch((err) => err);
  assert.ok(isJetStreamApiError(missing, JetStreamCodes.StreamNotFound));
  assert.ok(!isJetStreamApiError(missing, JetStreamCodes.ConsumerNotFound));
  await ensureStreams(nc, names);
  const noConsumer = await jsm.consumers.info(names.stream, "nobody").catch((err) => err);
  assert.ok(isJetStreamApiError(noConsumer, JetStreamCodes.ConsumerNotFound));
  const clash = await jsm.streams.add({ name: names.stream, subjects: [`${env.prefix}.x.>`] })
    .catch((err) => err);
  assert.ok(isJetStreamApiError(clash, JetStreamCodes.StreamNameExist));
  const overlap = await jsm.streams.add({
    name: `${names.stream}_X`,
    subjects: [`${env.prefix}.dialogs.>`],
  }).catch((err) => err);
  assert.ok(isJetStreamApiError(overlap, JetStreamCodes.StreamSubjectOverlap));
  assert.ok(!isJetStreamApiError(new Error("stream not found"), JetStreamCodes.StreamNotFound));
});
