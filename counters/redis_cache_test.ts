import assert from "node:assert/strict";
import { groupKey, userKey } from "./cache_keys.ts";
import { entryKey, GenerationMismatch, openRedisCache, redisKey } from "./redis_cache.ts";
import { integrationTest } from "../testing/env.ts";

integrationTest(
  "RedisCache.setManyIfNewer() never replaces a newer version, and reports each result",
  async (env) => {
    const cache = openRedisCache({ url: env.redisUrl, keyPrefix: env.redisPrefix });
    try {
      assert.equal(await cache.swapGeneration(null, "g1"), true);
      const [a, b, c] = [1, 2, 3].map(() => userKey(crypto.randomUUID()));
      await cache.setManyIfNewer("g1", [{
        key: b!,
        state: { version: 5, dialogs: { p: 5 } },
      }]);
      const results = await cache.setManyIfNewer("g1", [
        { key: a!, state: { version: 1, dialogs: { p: 1 } } },
        { key: b!, state: { version: 4, dialogs: { p: 4 } } },
        { key: b!, state: { version: 5, dialogs: { p: 9 } } },
        { key: c!, state: { version: 2, dialogs: {} } },
      ]);
      assert.deepEqual(results, [true, false, false, true]);
      assert.deepEqual(await cache.getMany("g1", [a!, b!, c!, userKey(crypto.randomUUID())]), [
        { version: 1, dialogs: { p: 1 } },
        { version: 5, dialogs: { p: 5 } },
        { version: 2, dialogs: {} },
        null,
      ]);
      assert.deepEqual(
        await cache.versions("g1", [a!, b!, c!, userKey(crypto.randomUUID())]),
        [1, 5, 2, null],
        "versions() reads the versions alone",
      );
      const ttl = await env.redis().pttl(`${env.redisPrefix}${redisKey("g1", a!)}`);
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
      const user = userKey(crypto.randomUUID());
      await assert.rejects(cache.getMany("g1", [user]), GenerationMismatch, "no generation yet");
      assert.equal(await cache.swapGeneration(null, "g1"), true);
      await cache.setManyIfNewer("g1", [{ key: user, state: { version: 1, dialogs: {} } }]);
      assert.equal(await cache.swapGeneration("g0", "g2"), false, "Redis holds g1, not g0");
      assert.equal(await cache.swapGeneration("g1", "g2"), true);
      await assert.rejects(cache.getMany("g1", [user]), GenerationMismatch);
      await assert.rejects(cache.versions("g1", [user]), GenerationMismatch);
      const [written] = await cache.setManyIfNewer("g1", [
        { key: user, state: { version: 2, dialogs: {} } },
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

integrationTest(
  "RedisCache keeps user and group states side by side, each with its own version, as g:<stamp>:<key>",
  async (env) => {
    const cache = openRedisCache({ url: env.redisUrl, keyPrefix: env.redisPrefix });
    try {
      assert.equal(await cache.swapGeneration(null, "g1"), true);
      const userId = crypto.randomUUID(), groupId = crypto.randomUUID();
      const user = {
        version: 3,
        dialogs: {},
        muted: [groupId],
        groups: {
          [groupId]: { joinedSeq: 1, readSeq: 2, muted: true, own: [4], mentions: [5] },
        },
      };
      const group = { version: 7, lastSeq: 9, deleted: [3], mentionsAll: [6] };
      assert.deepEqual(
        await cache.setManyIfNewer("g1", [
          { key: userKey(userId), state: user },
          { key: groupKey(groupId), state: group },
          { key: groupKey(groupId), state: { ...group, version: 6, lastSeq: 8 } },
        ]),
        [true, true, false],
        "the group's older version is refused",
      );
      assert.deepEqual(
        await cache.getMany("g1", [groupKey(groupId), userKey(userId), groupKey(userId)]),
        [group, user, null],
        "read back in one MGET; a user id under the group kind is another key",
      );
      const raw = await env.redis().get(`${env.redisPrefix}g:g1:group:${groupId}`);
      assert.equal(raw, `7|{"lastSeq":9,"deleted":[3],"mentionsAll":[6]}`);
      assert.equal(entryKey("g1", userId), `g:g1:user:${userId}`);
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
      await assert.rejects(cache.getMany("g", [userKey(crypto.randomUUID())]));
      assert.ok(Date.now() - started < 2_000, "fails fast instead of queueing");
    } finally {
      await cache.close();
    }
  },
});

integrationTest(
  "RedisCache.setManyIfNewer() writes a change of hundreds of states in batches, one result each in order",
  async (env) => {
    const cache = openRedisCache({ url: env.redisUrl, keyPrefix: env.redisPrefix });
    try {
      assert.equal(await cache.swapGeneration(null, "g1"), true);
      const keys = Array.from({ length: 250 }, () => userKey(crypto.randomUUID()));
      const held = keys[130]!;
      await cache.setManyIfNewer("g1", [{ key: held, state: { version: 9, dialogs: {} } }]);
      const results = await cache.setManyIfNewer(
        "g1",
        keys.map((key, i) => ({ key, state: { version: 2, dialogs: { p: i } } })),
      );
      assert.deepEqual(results, keys.map((key) => key !== held));
      const back = await cache.getMany("g1", keys);
      assert.deepEqual(back[249], { version: 2, dialogs: { p: 249 } });
      assert.deepEqual(back[130], { version: 9, dialogs: {} });
    } finally {
      await cache.close();
    }
  },
);
