import assert from "node:assert/strict";
import { createLogger } from "../log.ts";
import { createMetrics } from "../metrics.ts";
import { createBaseApp } from "./base_app.ts";
import { mountReadiness } from "./readiness.ts";

function testApp() {
  const log = createLogger("test", "debug", () => {});
  return createBaseApp({ service: "test", log, metrics: createMetrics() });
}

Deno.test("mountReadiness() answers 503 naming the failing dependency", async () => {
  const app = testApp();
  mountReadiness(app, {
    postgres: () => Promise.resolve(),
    redis: () => Promise.reject(new Error("connection refused")),
    nats: () => new Promise(() => {}),
  }, 100);
  const res = await app.request("/health/ready");
  assert.equal(res.status, 503);
  assert.equal(res.headers.get("Content-Type"), "application/problem+json");
  const body = await res.json();
  assert.equal(body.checks.postgres, "ok");
  assert.equal(body.checks.redis, "connection refused");
  assert.match(body.checks.nats, /did not answer/);
  assert.match(body.detail, /redis/);
});

Deno.test("mountReadiness() answers 200 listing every check when all answer", async () => {
  const app = testApp();
  mountReadiness(app, { postgres: () => Promise.resolve(), nats: () => Promise.resolve(1) });
  const res = await app.request("/health/ready");
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { status: "ok", checks: { postgres: "ok", nats: "ok" } });
});
