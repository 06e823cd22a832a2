import assert from "node:assert/strict";
import { entryKey, GenerationMismatch, openRedisCache } from "./redis_cache.ts";
import { integrationTest } from "../testing/env.ts";

integrationTest(
  "RedisCache.setManyIfNewer() never replaces a newer version, and reports each result",
  async (env) => {
    const cache = openRedisCache({ url: env.redisUrl, keyPrefix: env.redisPrefix });
    try {
      assert.equal(await cache.swapGeneration(null, "g1"), true);
      const [a, b, c] = [1, 2, 3].map(() => crypto.randomUUID());
      await cache.setManyIfNewer("g1", [{
        userId: b!,
        counters: { version: 5, dialogs: { p: 5 } },
      }]);
      const results = await cache.setManyIfNewer("g1", [
        { userId: a!, counters: { version: 1, dialogs: { p: 1 } } },
        { userId: b!, counters: { version: 4, dialogs: { p: 4 } } },
        { userId: b!, counters: { version: 5, dialogs: { p: 9 } } },
        { userId: c!, counters: { version: 2, dialogs: {} } },
      ]);
      assert.deepEqual(results, [true, false, false, true]);
      assert.deepEqual(await cache.getMany("g1", [a!, b!, c!, crypto.randomUUID()]), [
        { version: 1, dialogs: { p: 1 } },
        { version: 5, dialogs: { p: 5 } },
        { version: 2, dialogs: {} },
        null,
      ]);
      const ttl = await env.redis().pttl(`${env.redisPrefix}${entryKey("g1", a!)}`);
      assert.ok(ttl > 0, "entries expire");
    } finally {
      await cache.close();
    }
  },
);

integrationTest(
  "RedisCache: reads and writes naming another generation than Redis holds are refused",
  async (env) => {
    const cache = openRedisCache({ url: env.redisUrl, keyPrefix: env.redisPrefix });
    try {
      const user = crypto.randomUUID();
      await assert.rejects(cache.getMany("g1", [user]), GenerationMismatch, "no generation yet");
      assert.equal(await cache.swapGeneration(null, "g1"), true);
      await cache.setManyIfNewer("g1", [{ userId: user, counters: { version: 1, dialogs: {} } }]);
      assert.equal(await cache.swapGeneration("g0", "g2"), false, "Redis holds g1, not g0");
      assert.equal(await cache.swapGeneration("g1", "g2"), true);
      await assert.rejects(cache.getMany("g1", [user]), GenerationMismatch);
      const [written] = await cache.setManyIfNewer("g1", [
        { userId: user, counters: { version: 2, dialogs: {} } },
      ]);
      assert.ok(
        written instanceof GenerationMismatch,
        "nothing lands in a generation no one reads",
      );
      assert.deepEqual(await cache.getMany("g2", [user]), [null], "the new generation is empty");
      const { runId, stamp } = await cache.identity();
      assert.match(runId, /^\w{40}$/);
      assert.equal(stamp, "g2");
    } finally {
      await cache.close();
    }
  },
);

Deno.test({
  name: "RedisCache rejects quickly when Redis is unreachable",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const cache = openRedisCache({ url: "redis://127.0.0.1:1", keyPrefix: "x:" });
    try {
      const started = Date.now();
      await assert.rejects(cache.getMany("g", [crypto.randomUUID()]));
      assert.ok(Date.now() - started < 2_000, "fails fast instead of queueing");
    } finally {
      await cache.close();
    }
  },
});
