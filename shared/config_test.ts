import assert from "node:assert/strict";
import { commonEnv, ConfigError, DEV_JWT_SECRET, parseEnv, port } from "./config.ts";
import { natsServers } from "./jetstream.ts";
import { z } from "zod";
import { requiredEnvNames } from "../testing/config.ts";

const shape = { ...commonEnv, PORT: port(8081) };

Deno.test("parseEnv() fills every default from an empty environment", () => {
  const config = parseEnv(shape, {});
  assert.equal(config.NATS_URL, "nats://127.0.0.1:4222");
  assert.equal(config.NATS_STREAM, undefined, "derived from the prefix by streamNames()");
  assert.equal(config.NATS_STREAM_REPLICAS, 1);
  assert.equal(config.NATS_SUBJECT_PREFIX, "saga");
  assert.equal(config.JWT_SECRET, DEV_JWT_SECRET);
  assert.equal(config.LOG_LEVEL, "info");
  assert.equal(config.EVENT_RETRY_BUDGET, 20);
  assert.equal(config.PORT, 8081);
});

Deno.test("parseEnv() treats an empty string as unset", () => {
  assert.equal(parseEnv(shape, { PORT: "" }).PORT, 8081);
});

Deno.test("parseEnv() coerces PORT and keeps given values", () => {
  const config = parseEnv(shape, { PORT: "9000", NATS_SUBJECT_PREFIX: "a.b", LOG_LEVEL: "debug" });
  assert.equal(config.PORT, 9000);
  assert.equal(config.NATS_SUBJECT_PREFIX, "a.b");
  assert.equal(config.LOG_LEVEL, "debug");
});

Deno.test("parseEnv() rejects a bad variable with one line naming it", () => {
  for (
    const [name, value] of [
      ["PORT", "eighty"],
      ["PORT", "70000"],
      ["LOG_LEVEL", "loud"],
      ["NATS_URL", "http://x"],
      ["NATS_URL", "nats://a:4222,,nats://b:4222"],
      ["NATS_URL", "nats://a:4222,http://b"],
      ["NATS_URL", "nats://a:4222 nats://b:4222"],
      ["NATS_STREAM_REPLICAS", "0"],
      ["NATS_STREAM_REPLICAS", "6"],
      ["NATS_STREAM_REPLICAS", "two"],
      ["NATS_STREAM_REPLICAS", "1.5"],
      ["NATS_SUBJECT_PREFIX", "a..b"],
      ["NATS_SUBJECT_PREFIX", "a_dlq"],
      ["NATS_SUBJECT_PREFIX", "acme.saga_live"],
      ["NATS_STREAM", "a.b"],
      ["EVENT_RETRY_BUDGET", "0"],
      ["JWT_SECRET", "short"],
    ]
  ) {
    assert.throws(() => parseEnv(shape, { [name!]: value }), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, new RegExp(`^invalid environment variable ${name} `));
      assert.ok(!err.message.includes("\n"), "one line");
      return true;
    });
  }
});

Deno.test("requiredEnvNames() lists only variables without a default", () => {
  assert.deepEqual(requiredEnvNames({ ...shape, SECRET: z.string() }), ["SECRET"]);
  assert.deepEqual(requiredEnvNames(shape), []);
});

Deno.test("parseEnv() takes NATS_URL as one server or a comma-separated list, and NATS_STREAM_REPLICAS 1 to 5", () => {
  const list = "nats://nats:4222,nats://nats-2:4222, tls://nats-3:4222";
  const config = parseEnv(shape, { NATS_URL: list, NATS_STREAM_REPLICAS: "3" });
  assert.equal(config.NATS_URL, list);
  assert.equal(config.NATS_STREAM_REPLICAS, 3);
  assert.deepEqual(natsServers(config.NATS_URL), [
    "nats://nats:4222",
    "nats://nats-2:4222",
    "tls://nats-3:4222",
  ]);
  assert.deepEqual(natsServers("nats://127.0.0.1:4222"), ["nats://127.0.0.1:4222"]);
  assert.equal(parseEnv(shape, { NATS_STREAM_REPLICAS: "5" }).NATS_STREAM_REPLICAS, 5);
});

Deno.test("parseEnv() checks the OTEL_ variables Deno reads, so a typo stops the service instead of silently leaving tracing off", () => {
  const ok = parseEnv(commonEnv, {
    OTEL_DENO: "true",
    OTEL_EXPORTER_OTLP_ENDPOINT: "http://jaeger:4318",
    OTEL_SERVICE_NAME: "counters",
  });
  assert.equal(ok.OTEL_DENO, "true");
  assert.equal(parseEnv(commonEnv, {}).OTEL_DENO, "false");
  assert.throws(
    () => parseEnv(commonEnv, { OTEL_DENO: "yes" }),
    (err: Error) =>
      err instanceof ConfigError &&
      /^invalid environment variable OTEL_DENO \("yes"\)/.test(err.message),
  );
  assert.throws(
    () => parseEnv(commonEnv, { OTEL_EXPORTER_OTLP_ENDPOINT: "jaeger:4318 " }),
    /OTEL_EXPORTER_OTLP_ENDPOINT/,
  );
});
