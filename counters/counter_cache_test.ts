import assert from "node:assert/strict";
import { openCounterCache } from "./counter_cache.ts";
import { integrationTest } from "../testing/env.ts";

integrationTest(
  "CounterCache.setIfNewer() never replaces a newer version with an older one",
  async (env) => {
    const cache = openCounterCache({ url: env.redisUrl, keyPrefix: env.redisPrefix });
    try {
      const user = crypto.randomUUID();
      assert.equal(await cache.get(user), null);
      assert.equal(await cache.setIfNewer(user, { version: 2, dialogs: { p: 2 } }), true);
      assert.equal(await cache.setIfNewer(user, { version: 1, dialogs: { p: 1 } }), false);
      assert.equal(await cache.setIfNewer(user, { version: 2, dialogs: { p: 9 } }), false);
      assert.deepEqual(await cache.get(user), { version: 2, dialogs: { p: 2 } });
      assert.equal(await cache.setIfNewer(user, { version: 3, dialogs: {} }), true);
      assert.deepEqual(await cache.get(user), { version: 3, dialogs: {} });
      const ttl = await env.redis().pttl(`${env.redisPrefix}user:${user}`);
      assert.ok(ttl > 0, "entries expire");
    } finally {
      await cache.close();
    }
  },
);

integrationTest(
  "CounterCache.setManyIfNewer() writes each entry that is newer and reports each result",
  async (env) => {
    const cache = openCounterCache({ url: env.redisUrl, keyPrefix: env.redisPrefix });
    try {
      const [a, b, c] = [1, 2, 3].map(() => crypto.randomUUID());
      await cache.setIfNewer(b!, { version: 5, dialogs: { p: 5 } });
      const results = await cache.setManyIfNewer([
        { userId: a!, counters: { version: 1, dialogs: { p: 1 } } },
        { userId: b!, counters: { version: 4, dialogs: { p: 4 } } },
        { userId: c!, counters: { version: 2, dialogs: {} } },
      ]);
      assert.deepEqual(results, [true, false, true]);
      assert.deepEqual(await cache.get(a!), { version: 1, dialogs: { p: 1 } });
      assert.deepEqual(await cache.get(b!), { version: 5, dialogs: { p: 5 } });
      assert.deepEqual(await cache.get(c!), { version: 2, dialogs: {} });
    } finally {
      await cache.close();
    }
  },
);

Deno.test({
  name: "CounterCache rejects quickly when Redis is unreachable",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const cache = openCounterCache({ url: "redis://127.0.0.1:1", keyPrefix: "x:" });
    try {
      const started = Date.now();
      await assert.rejects(cache.get(crypto.randomUUID()));
      assert.ok(Date.now() - started < 2_000, "fails fast instead of queueing");
    } finally {
      await cache.close();
    }
  },
});
