import assert from "node:assert/strict";
import { createLogger } from "../shared/log.ts";
import type { Counter } from "../shared/metrics.ts";
import { integrationTest, migratedDatabase, type TestEnv, waitFor } from "../testing/env.ts";
import { startTcpProxy } from "../testing/tcp_proxy.ts";
import { type CounterCache, openCounterCache } from "./counter_cache.ts";
import { createCounterReader } from "./counter_reads.ts";
import { createLocalCache } from "./local_cache.ts";

function disabledLocalCache() {
  const local = createLocalCache();
  local.suspend();
  return local;
}

/**
 * A reader on the test's counters database that counts its Postgres loads and its cache lookups by
 * result; the in-process cache is off unless `local` is given, so tests see the Redis path alone.
 */
async function readerFor(env: TestEnv, cache: CounterCache, local = disabledLocalCache()) {
  const sql = await migratedDatabase(env.countersDatabaseUrl, "counters");
  const stats = { loads: 0, lookups: {} as Record<string, number> };
  const databaseLoads: Counter = {
    inc(_labels, by = 1) {
      stats.loads += by;
    },
  };
  const cacheLookups: Counter = {
    inc(labels, by = 1) {
      const result = labels?.result ?? "";
      stats.lookups[result] = (stats.lookups[result] ?? 0) + by;
    },
  };
  const reader = createCounterReader({
    sql,
    cache,
    local,
    log: createLogger("test", "debug", env.logSink),
    cacheLookups,
    databaseLoads,
  });
  return { sql, reader, stats };
}

integrationTest(
  "CounterReader: one miss per user loads Postgres once however many requests wait",
  async (env) => {
    const cache = openCounterCache({ url: env.redisUrl, keyPrefix: env.redisPrefix });
    const { sql, reader, stats } = await readerFor(env, cache);
    try {
      await cache.ping();
      const me = crypto.randomUUID(), peer = crypto.randomUUID();
      await sql`insert into unread_counters (user_id, peer_id, unread) values (${me}, ${peer}, 3)`;
      await sql`insert into counter_versions (user_id, version) values (${me}, 3)`;
      assert.equal(await cache.get(me), null, "the user is not in Redis");

      const results = await Promise.all(Array.from({ length: 50 }, () => reader.read(me)));
      assert.equal(stats.loads, 1, "50 concurrent misses share one Postgres load");
      for (const r of results) assert.deepEqual(r, { version: 3, dialogs: { [peer]: 3 } });
      assert.deepEqual(await cache.get(me), { version: 3, dialogs: { [peer]: 3 } });

      // Filled: the next read is a hit and loads nothing.
      await reader.read(me);
      assert.equal(stats.loads, 1);
    } finally {
      await cache.close();
      await sql.end({ timeout: 1 });
    }
  },
);

integrationTest(
  "CounterReader: a failed cache write makes reads of that user bypass Redis until a retry succeeds",
  async (env) => {
    const redis = new URL(env.redisUrl);
    const proxy = startTcpProxy({ hostname: redis.hostname, port: Number(redis.port || 6379) });
    const direct = openCounterCache({ url: env.redisUrl, keyPrefix: env.redisPrefix });
    const proxied = openCounterCache({
      url: `redis://127.0.0.1:${proxy.port}`,
      keyPrefix: env.redisPrefix,
    });
    const { sql, reader, stats } = await readerFor(env, proxied);
    const me = crypto.randomUUID(), peer = crypto.randomUUID();
    const version = (v: number) => ({ version: v, dialogs: { [peer]: v } });
    const setPostgres = async (v: number) => {
      await sql`
        insert into unread_counters (user_id, peer_id, unread) values (${me}, ${peer}, ${v})
        on conflict (user_id, peer_id) do update set unread = excluded.unread`;
      await sql`
        insert into counter_versions (user_id, version) values (${me}, ${v})
        on conflict (user_id) do update set version = excluded.version`;
    };
    // Cuts Redis off and waits until the reader's client has noticed.
    const cut = async () => {
      await proxy.cut();
      await assert.rejects(proxied.ping());
    };
    const restore = async () => {
      await proxy.restore();
      await waitFor(() => proxied.ping(), { what: "Redis through the proxy again" });
    };
    try {
      await proxied.ping();
      assert.equal(await direct.setIfNewer(me, version(1)), true);
      await setPostgres(2);

      // The write of version 2 fails: Redis keeps version 1.
      await cut();
      assert.deepEqual(await reader.refresh(me), version(2), "refresh reads Postgres");
      assert.ok(
        env.logs.some((l) => String(l.msg).startsWith("cache write failed") && l.userId === me),
        "the failed write is logged",
      );
      await restore();
      assert.deepEqual(await proxied.get(me), version(1), "Redis, reachable again, is stale");

      // A read does not trust the stale entry: it goes to Postgres (and its write repairs Redis).
      let loads = stats.loads;
      assert.deepEqual(await reader.read(me), version(2));
      assert.equal(stats.loads, loads + 1, "the read went to Postgres, not Redis");
      assert.deepEqual(await direct.get(me), version(2));
      loads = stats.loads;
      assert.deepEqual(await reader.read(me), version(2));
      assert.equal(stats.loads, loads, "once written, reads come from Redis again");

      // The retry: a failed write of version 3 is retried until Redis takes it.
      await setPostgres(3);
      await cut();
      assert.deepEqual(await reader.refresh(me), version(3));
      assert.equal(await reader.retryFailedWrites(), 1, "still unsafe while Redis is down");
      await restore();
      assert.deepEqual(await direct.get(me), version(2), "Redis holds the old version");
      assert.equal(await reader.retryFailedWrites(), 0, "no user left unsafe");
      assert.deepEqual(await direct.get(me), version(3), "the retry wrote the new version");
      loads = stats.loads;
      assert.deepEqual(await reader.read(me), version(3));
      assert.equal(stats.loads, loads, "reads come from Redis again");
    } finally {
      await proxied.close();
      await direct.close();
      await proxy.close();
      await sql.end({ timeout: 1 });
    }
  },
);

integrationTest(
  "CounterReader: a delayed write of an older version does not end the bypass of a failed newer one",
  async (env) => {
    const real = openCounterCache({ url: env.redisUrl, keyPrefix: env.redisPrefix });
    let releaseFirst!: () => void;
    const firstMayWrite = new Promise<void>((r) => releaseFirst = r);
    let writes = 0;
    // The first write (version 1, from a slow read) is held back; the second (version 2) fails.
    const cache: CounterCache = {
      ...real,
      async setIfNewer(userId, counters) {
        writes++;
        if (writes === 1) {
          await firstMayWrite;
          return real.setIfNewer(userId, counters);
        }
        if (writes === 2) throw new Error("redis blip");
        return real.setIfNewer(userId, counters);
      },
      async setManyIfNewer(entries) {
        return await Promise.all(
          entries.map(({ userId, counters }) =>
            this.setIfNewer(userId, counters).catch((err: Error) => err)
          ),
        );
      },
    };
    const { sql, reader } = await readerFor(env, cache);
    try {
      const me = crypto.randomUUID(), peer = crypto.randomUUID();
      await sql`insert into unread_counters (user_id, peer_id, unread) values (${me}, ${peer}, 1)`;
      await sql`insert into counter_versions (user_id, version) values (${me}, 1)`;
      const slowRead = reader.read(me);
      await waitFor(() => writes === 1, { what: "the slow read to reach its cache write" });
      await sql`update unread_counters set unread = 2 where user_id = ${me}`;
      await sql`update counter_versions set version = 2 where user_id = ${me}`;
      assert.equal((await reader.refresh(me)).version, 2);
      releaseFirst();
      assert.equal((await slowRead).version, 1);
      assert.deepEqual(
        await real.get(me),
        { version: 1, dialogs: { [peer]: 1 } },
        "Redis is stale",
      );
      assert.equal((await reader.read(me)).version, 2, "still bypassing the stale entry");
      assert.equal(await reader.retryFailedWrites(), 0);
      assert.deepEqual(await real.get(me), { version: 2, dialogs: { [peer]: 2 } });
    } finally {
      await real.close();
      await sql.end({ timeout: 1 });
    }
  },
);

integrationTest(
  "CounterReader.refreshMany() loads several users at once and caches each at its version",
  async (env) => {
    const cache = openCounterCache({ url: env.redisUrl, keyPrefix: env.redisPrefix });
    const { sql, reader, stats } = await readerFor(env, cache);
    try {
      const [a, b, peer] = [1, 2, 3].map(() => crypto.randomUUID());
      await sql`insert into unread_counters (user_id, peer_id, unread) values (${a!}, ${peer!}, 2)`;
      await sql`insert into counter_versions (user_id, version) values (${a!}, 7)`;
      const refreshed = await reader.refreshMany([a!, b!]);
      assert.deepEqual(refreshed, [{ version: 7, dialogs: { [peer!]: 2 } }, {
        version: 0,
        dialogs: {},
      }]);
      assert.equal(stats.loads, 2, "counted per user");
      assert.deepEqual(await cache.get(a!), refreshed[0]);
      assert.deepEqual(await cache.get(b!), refreshed[1]);
    } finally {
      await cache.close();
      await sql.end({ timeout: 1 });
    }
  },
);

integrationTest(
  "CounterReader: entries users keep reading are confirmed from Redis in one batch; an unconfirmed one expires",
  async (env) => {
    const cache = openCounterCache({ url: env.redisUrl, keyPrefix: env.redisPrefix });
    let t = 0;
    const local = createLocalCache({ ttlMs: 1_000, refreshAfterMs: 500, now: () => t });
    const { sql, reader, stats } = await readerFor(env, cache, local);
    try {
      const [a, b, gone] = [crypto.randomUUID(), crypto.randomUUID(), crypto.randomUUID()];
      const counters = { version: 2, dialogs: { [crypto.randomUUID()]: 1 } };
      await cache.setManyIfNewer([{ userId: a, counters }, { userId: b, counters }]);
      for (const u of [a, b, gone]) local.offer(u, counters); // `gone` is not in Redis
      t = 600;
      for (const u of [a, b, gone]) assert.deepEqual(reader.cached(u), counters);
      await waitFor(() => stats.lookups.refreshed === 3, {
        what: "one batch refreshing the three users",
      });
      t = 1_500; // past the first time to live, within the confirmation's
      assert.deepEqual(reader.cached(a), counters);
      assert.deepEqual(reader.cached(b), counters);
      assert.equal(reader.cached(gone), undefined, "missing from Redis, so never confirmed");
    } finally {
      await cache.close();
      await sql.end({ timeout: 1 });
    }
  },
);

integrationTest(
  "CounterReader: many entries due together are refreshed in batches of at most 200 users",
  async (env) => {
    const redis = openCounterCache({ url: env.redisUrl, keyPrefix: env.redisPrefix });
    const batches: number[] = [];
    const cache: CounterCache = {
      ...redis,
      getMany(userIds) {
        batches.push(userIds.length);
        return redis.getMany(userIds);
      },
    };
    let t = 0;
    const local = createLocalCache({ ttlMs: 1_000, refreshAfterMs: 500, now: () => t });
    const { sql, reader } = await readerFor(env, cache, local);
    try {
      const counters = { version: 1, dialogs: { [crypto.randomUUID()]: 2 } };
      const users = Array.from({ length: 450 }, () => crypto.randomUUID());
      await redis.setManyIfNewer(users.map((userId) => ({ userId, counters })));
      for (const u of users) local.offer(u, counters);
      t = 600;
      for (const u of users) reader.cached(u);
      await waitFor(() => batches.reduce((a, b) => a + b, 0) === 450, {
        what: "all 450 users refreshed",
      });
      assert.ok(batches.length >= 3 && batches.every((n) => n <= 200), `batches: ${batches}`);
      t = 1_500;
      assert.ok(users.every((u) => reader.cached(u)), "every entry was confirmed");
    } finally {
      await redis.close();
      await sql.end({ timeout: 1 });
    }
  },
);
