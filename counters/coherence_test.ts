import assert from "node:assert/strict";
import { Redis } from "ioredis";
import type { Sql } from "../shared/db.ts";
import { createLogger } from "../shared/log.ts";
import type { Counter } from "../shared/metrics.ts";
import { integrationTest, migratedDatabase, type TestEnv, waitFor } from "../testing/env.ts";
import { startPrivateRedis } from "../testing/redis_server.ts";
import {
  type CoherenceTimings,
  type CoherentCounters,
  createCoherentCounters,
  type StateLoaders,
} from "./coherence.ts";
import { type CachedState, groupKey, userKey } from "./cache_keys.ts";
import { loadManyGroupCounters, loadManyUserCounters } from "./counter_store.ts";
import type { GroupCounters, UserCounters } from "./counters.ts";
import type { LiveUpdates } from "./live_updates.ts";
import { createLocalCache, type LocalCache } from "./local_cache.ts";
import { entryKey, openRedisCache, type RedisCache } from "./redis_cache.ts";

/** Live updates between the instances of one test, in memory; every instance acknowledges. */
function memoryLive(): { instance: () => LiveUpdates } {
  const everyChange: ((key: string, state: CachedState) => void)[] = [];
  const ids: string[] = [];
  return {
    instance() {
      const instanceId = crypto.randomUUID();
      ids.push(instanceId);
      return {
        instanceId,
        publish(changes) {
          for (const { key, state } of changes) everyChange.forEach((l) => l(key, state));
          return Promise.resolve(new Set(ids));
        },
        deliverHere: () => {},
        onChange: (listener) => void everyChange.push(listener),
        onTooLarge: () => {},
        subscribe: () => () => {},
        close: () => {},
      };
    },
  };
}

function disabledLocalCache() {
  const local = createLocalCache();
  local.suspend();
  return local;
}

/** Counts a metric's increments by one label. */
function countingBy(label: string) {
  const counts: Record<string, number> = {};
  const counter: Counter = {
    inc(labels, by = 1) {
      const key = labels?.[label] ?? "";
      counts[key] = (counts[key] ?? 0) + by;
    },
  };
  return { counts, counter };
}

/**
 * Postgres' loaders, recording the user ids of each users' load (sorted); `holdNext()` holds the
 * next users' load after Postgres answered, until released: a slow changed() on a busy machine.
 */
function holdableUserLoads() {
  const loads: string[][] = [];
  let hold: { loaded: () => void; release: Promise<void> } | undefined;
  const loaders: StateLoaders = {
    async users(sql, userIds) {
      loads.push([...userIds].sort());
      const states = await loadManyUserCounters(sql, userIds);
      const held = hold;
      hold = undefined;
      if (held) {
        held.loaded();
        await held.release;
      }
      return states;
    },
    groups: loadManyGroupCounters,
  };
  function holdNext() {
    const loaded = Promise.withResolvers<void>();
    const release = Promise.withResolvers<void>();
    hold = { loaded: loaded.resolve, release: release.promise };
    return { loaded: loaded.promise, release: () => release.resolve() };
  }
  return { loaders, loads, holdNext };
}

/** One counters instance's coherence on the test's counters database and `redis`. */
function instance(
  env: TestEnv,
  sql: Sql,
  redis: RedisCache,
  options: {
    local?: LocalCache;
    live?: LiveUpdates;
    timings?: Partial<CoherenceTimings>;
    loaders?: StateLoaders;
  } = {},
) {
  const lookups = countingBy("result");
  const generations = countingBy("reason");
  const stats = { loads: 0, lookups: lookups.counts, generations: generations.counts };
  const counters = createCoherentCounters({
    sql,
    redis,
    local: options.local ?? disabledLocalCache(),
    live: options.live ?? memoryLive().instance(),
    log: createLogger("test", "debug", env.logSink),
    cacheLookups: lookups.counter,
    databaseLoads: {
      inc(_labels, by = 1) {
        stats.loads += by;
      },
    },
    generationChanges: generations.counter,
    timings: options.timings,
    loaders: options.loaders,
  });
  return { counters, stats };
}

/** The test's counters database, migrated; its pool is closed with the test. */
async function countersDb(env: TestEnv): Promise<Sql> {
  await (await migratedDatabase(env.countersDatabaseUrl, "counters")).end({ timeout: 1 });
  return env.sql("counters");
}

/** Sets a user's counters in Postgres: `unread` from one peer, at version `version`. */
async function setPostgres(sql: Sql, user: string, peer: string, unread: number, version = unread) {
  await sql`
    insert into unread_counters (user_id, peer_id, unread) values (${user}, ${peer}, ${unread})
    on conflict (user_id, peer_id) do update set unread = excluded.unread`;
  await sql`
    insert into counter_versions (user_id, version) values (${user}, ${version})
    on conflict (user_id) do update set version = excluded.version`;
}

const at = (peer: string, n: number): UserCounters => ({ version: n, dialogs: { [peer]: n } });

async function generationRow(sql: Sql) {
  const [row] = await sql<{ stamp: string; redis_run_id: string | null }[]>`
    select stamp, redis_run_id from cache_generation`;
  return row!;
}

/** Waits until every instance trusts Redis and Redis holds Postgres' stamp; returns the stamp. */
async function settled(
  sql: Sql,
  redis: Redis,
  prefix: string,
  instances: CoherentCounters[],
): Promise<string> {
  return await waitFor(async () => {
    const row = await generationRow(sql);
    const held = await redis.get(`${prefix}generation`);
    const agreed = instances.every((i) => i.trusted()) && row.redis_run_id && held === row.stamp;
    return agreed ? row.stamp : undefined;
  }, { what: "every instance on one confirmed generation" });
}

/**
 * Two counters instances (A and B) on the test's database and a private redis-server, with an
 * admin client to that server; `close` stops all of it.
 */
async function twoInstancesOnPrivateRedis(
  env: TestEnv,
  options: { loadersOfA?: StateLoaders } = {},
) {
  const dir = await Deno.makeTempDir({ prefix: "coherence-redis-" });
  const server = await startPrivateRedis(dir);
  const sql = await countersDb(env);
  const caches = [0, 1].map(() => openRedisCache({ url: server.url, keyPrefix: "c:" }));
  const [a, b] = caches.map((redis, i) =>
    instance(env, sql, redis, i === 0 ? { loaders: options.loadersOfA } : {})
  );
  const admin = new Redis(server.url, { maxRetriesPerRequest: 1 });
  admin.on("error", () => {});
  return {
    server,
    sql,
    a: a!,
    b: b!,
    admin,
    async close() {
      admin.disconnect();
      await a!.counters.close();
      await b!.counters.close();
      for (const cache of caches) await cache.close();
      await server.kill();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** One instance on the test's database and the shared Redis (its own key prefix), once trusted. */
async function oneInstance(
  env: TestEnv,
  options: { local?: LocalCache; timings?: Partial<CoherenceTimings>; redis?: RedisCache } = {},
) {
  const sql = await countersDb(env);
  const redis = options.redis ??
    openRedisCache({ url: env.redisUrl, keyPrefix: env.redisPrefix });
  const made = instance(env, sql, redis, options);
  await waitFor(() => made.counters.trusted() && made.counters.servesFromMemory(), {
    what: "a confirmed generation, and the in-process cache served",
  });
  return {
    sql,
    ...made,
    async close() {
      await made.counters.close();
      await redis.close();
    },
  };
}

integrationTest(
  "coherence: one miss per user loads Postgres once however many requests wait, and fills Redis",
  async (env) => {
    const { sql, counters, stats, close } = await oneInstance(env);
    try {
      const me = crypto.randomUUID(), peer = crypto.randomUUID();
      await setPostgres(sql, me, peer, 3);
      const results = await Promise.all(Array.from({ length: 50 }, () => counters.read(me)));
      assert.equal(stats.loads, 1, "50 concurrent misses share one Postgres load");
      for (const r of results) assert.deepEqual(r.user, at(peer, 3));
      await counters.read(me);
      assert.equal(stats.loads, 1, "filled: the next read is a Redis hit");
      assert.equal(stats.lookups.hit, 1);
      const { stamp, redis_run_id } = await generationRow(sql);
      assert.ok(redis_run_id, "the generation names the Redis run it was stamped on");
      assert.equal(await env.redis().get(`${env.redisPrefix}generation`), stamp);
      assert.ok(await env.redis().get(`${env.redisPrefix}${entryKey(stamp, me)}`));
    } finally {
      await close();
    }
  },
);

integrationTest(
  "coherence: a flushed Redis (its stamp gone) is stamped anew and read again",
  async (env) => {
    const { sql, counters, stats, close } = await oneInstance(env);
    try {
      const me = crypto.randomUUID(), peer = crypto.randomUUID();
      await setPostgres(sql, me, peer, 1);
      await counters.read(me);
      const before = await generationRow(sql);
      // What a FLUSHALL does to this deployment's keys (the shared Redis itself is never flushed).
      const keys = await env.redis().keys(`${env.redisPrefix}*`);
      assert.ok(keys.length >= 2, "the generation and the entry");
      await env.redis().del(...keys);
      await setPostgres(sql, me, peer, 2);
      assert.deepEqual((await counters.read(me)).user, at(peer, 2));
      await waitFor(async () => (await generationRow(sql)).stamp !== before.stamp, {
        what: "a new generation",
      });
      assert.equal(stats.generations.redis_lost_stamp, 1);
      await waitFor(() => counters.trusted(), { what: "Redis trusted again" });
      const loads = stats.loads;
      await counters.read(me);
      await counters.read(me);
      assert.equal(stats.loads, loads + 1, "one fill in the new generation, then hits");
    } finally {
      await close();
    }
  },
);

integrationTest(
  "coherence: a Redis restarted from an older snapshot is never served, by any instance",
  async (env) => {
    const { server, sql, a, b, admin, close } = await twoInstancesOnPrivateRedis(env);
    try {
      const me = crypto.randomUUID(), peer = crypto.randomUUID();
      await setPostgres(sql, me, peer, 1);
      const stamp = await settled(sql, admin, "c:", [a.counters, b.counters]);
      assert.deepEqual((await b.counters.read(me)).user, at(peer, 1));
      const snapshot = await server.saveSnapshot(); // version 1 and the generation's stamp
      await setPostgres(sql, me, peer, 2);
      await a.counters.changed([userKey(me)]);
      assert.deepEqual((await b.counters.read(me)).user, at(peer, 2), "Redis has version 2");

      await server.restartFromSnapshot(snapshot); // version 1 again, under the same stamp
      admin.disconnect();
      const probe = new Redis(server.url, { maxRetriesPerRequest: 1 });
      const restored = await probe.get(`c:${entryKey(stamp, me)}`).finally(() =>
        probe.disconnect()
      );
      assert.match(String(restored), /^1\|/, "Redis holds version 1 again");

      for (const reader of [a, b]) {
        const seen = await reader.counters.read(me).then((c) => c.user, () => undefined);
        assert.notDeepEqual(seen, at(peer, 1), "the older snapshot's entry is never served");
      }
      await waitFor(async () => (await generationRow(sql)).stamp !== stamp, {
        what: "the restarted Redis stamped anew",
      });
      await waitFor(() => a.counters.trusted() && b.counters.trusted(), {
        what: "both instances trusting the new generation",
      });
      assert.deepEqual((await a.counters.read(me)).user, at(peer, 2));
      assert.deepEqual((await b.counters.read(me)).user, at(peer, 2));
    } finally {
      await close();
    }
  },
);

integrationTest(
  "coherence: a Redis refusing writes marks the cache unsafe; the change waits out the lease and no instance serves the old entry",
  async (env) => {
    const { server, sql, a, b, close } = await twoInstancesOnPrivateRedis(env);
    const leaseMs = 1_000; // the default
    try {
      const me = crypto.randomUUID(), peer = crypto.randomUUID();
      await setPostgres(sql, me, peer, 1);
      await waitFor(() => a.counters.trusted() && b.counters.trusted(), { what: "Redis trusted" });
      assert.deepEqual((await b.counters.read(me)).user, at(peer, 1));
      await server.refuseWrites();

      await setPostgres(sql, me, peer, 2);
      const started = performance.now();
      await a.counters.changed([userKey(me)]);
      assert.ok(
        performance.now() - started >= leaseMs,
        "the change waited until no lease on the old generation could remain",
      );
      assert.equal((await generationRow(sql)).redis_run_id, null, "unsafe, in Postgres");
      assert.equal(a.stats.generations.write_failed, 1, JSON.stringify(a.stats));
      assert.deepEqual((await b.counters.read(me)).user, at(peer, 2), "B never serves version 1");
      assert.equal(b.counters.trusted(), false, "nobody can confirm Redis while it refuses writes");

      // A second failure while still unsafe neither stamps again nor waits again.
      const again = performance.now();
      await a.counters.changed([userKey(me)]);
      assert.ok(performance.now() - again < leaseMs, "no second wait");
      assert.equal(a.stats.generations.write_failed, 1);

      await server.acceptWrites();
      await waitFor(() => a.counters.trusted() && b.counters.trusted(), {
        what: "Redis stamped anew once it takes writes",
      });
      assert.deepEqual((await b.counters.read(me)).user, at(peer, 2));
      assert.deepEqual((await a.counters.read(me)).user, at(peer, 2));
    } finally {
      await close();
    }
  },
);

integrationTest(
  "coherence: a change loaded before Redis was stamped anew never writes its older state into the new generation",
  async (env) => {
    // A's loads of users can be held after Postgres answered: a slow changed() on a busy machine.
    const { loaders: loadersOfA, holdNext } = holdableUserLoads();
    const { sql, a, b, admin, close } = await twoInstancesOnPrivateRedis(env, { loadersOfA });
    try {
      const me = crypto.randomUUID(), peer = crypto.randomUUID();
      await setPostgres(sql, me, peer, 1);
      const first = await settled(sql, admin, "c:", [a.counters, b.counters]);

      // A's changed() has loaded version 1 and is held before its Redis write.
      const held = holdNext();
      const changedOnA = a.counters.changed([userKey(me)]);
      await held.loaded;

      // Meanwhile version 2 commits and B writes it, into the generation of the moment.
      await setPostgres(sql, me, peer, 2);
      await b.counters.changed([userKey(me)]);
      // Then Redis loses everything (FLUSHALL) and is stamped anew; every lease on the first
      // generation runs out, and both instances trust the new one.
      await admin.flushall();
      await waitFor(async () => (await generationRow(sql)).stamp !== first, {
        what: "the flushed Redis stamped anew",
      });
      await new Promise((r) => setTimeout(r, 1_100)); // leaseMs, the default, and a margin
      await settled(sql, admin, "c:", [a.counters, b.counters]);

      held.release();
      await changedOnA;
      for (const reader of [b, a]) {
        assert.deepEqual(
          (await reader.counters.read(me)).user,
          at(peer, 2),
          "version 1, loaded before the new generation, is never served from it",
        );
      }
    } finally {
      await close();
    }
  },
);

integrationTest(
  "coherence: changes that come while earlier ones are refreshed go together in the next round, one load of their keys' union that starts after each of them committed",
  async (env) => {
    const { loaders: loadersOfA, holdNext, loads } = holdableUserLoads();
    const { sql, a, b, admin, close } = await twoInstancesOnPrivateRedis(env, { loadersOfA });
    try {
      const peer = crypto.randomUUID();
      const [u1, u2, u3] = [0, 1, 2].map(() => crypto.randomUUID()) as [string, string, string];
      for (const u of [u1, u2, u3]) await setPostgres(sql, u, peer, 1);
      await settled(sql, admin, "c:", [a.counters, b.counters]);

      // A's first change has loaded version 1 of u1 and is held.
      const held = holdNext();
      const first = a.counters.changed([userKey(u1)]);
      await held.loaded;

      // Meanwhile three changes commit version 2 of u1, u2 and u3, each naming two of them.
      for (const u of [u1, u2, u3]) await setPostgres(sql, u, peer, 2);
      const done: number[] = [];
      const later = [[u1, u2], [u2, u3], [u3, u1]].map((users, i) =>
        a.counters.changed(users.map(userKey)).then(() => void done.push(i))
      );
      await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual(done, [], "no change waiting for the next round is done before it ran");

      held.release();
      await first;
      await Promise.all(later);
      assert.deepEqual(
        loads,
        [[u1], [u1, u2, u3].sort()],
        "the three changes were loaded in one round, each user once",
      );
      for (const u of [u1, u2, u3]) {
        assert.deepEqual(
          (await b.counters.read(u)).user,
          at(peer, 2),
          "the round's load came after their commits, and Redis holds what it loaded",
        );
      }
    } finally {
      await close();
    }
  },
);

integrationTest(
  "coherence: a change whose Redis write failed publishes its live update before waiting out the leases, so a cache cleared meanwhile never keeps its older state",
  async (env) => {
    const dir = await Deno.makeTempDir({ prefix: "coherence-redis-" });
    const server = await startPrivateRedis(dir);
    const sql = await countersDb(env);
    const redis = openRedisCache({ url: server.url, keyPrefix: "c:" });
    const live = memoryLive();
    const other = live.instance();
    const receiver = createLocalCache();
    const a = instance(env, sql, redis, { live: live.instance() });
    const b = instance(env, sql, redis, { local: receiver, live: live.instance() });
    try {
      const me = crypto.randomUUID(), peer = crypto.randomUUID();
      await setPostgres(sql, me, peer, 1);
      await waitFor(() => a.counters.trusted(), { what: "Redis trusted" });
      await server.refuseWrites();
      // A's write of version 1 fails: the cache is marked unsafe and A waits out the leases.
      const changedOnA = a.counters.changed([userKey(me)]);
      await waitFor(async () => (await generationRow(sql)).redis_run_id === null, {
        what: "the cache marked unsafe",
      });
      await new Promise((r) => setTimeout(r, 200));
      // B loaded version 1. Meanwhile version 2 commits and its live update reaches B; then B's
      // cache is cleared (a new generation, say).
      receiver.offer("user", me, at(peer, 1), receiver.epoch);
      await setPostgres(sql, me, peer, 2);
      await other.publish([{ key: userKey(me), state: at(peer, 2) }]);
      assert.equal(receiver.get("user", me)?.version, 2);
      receiver.clear();
      await changedOnA;
      assert.notEqual(
        receiver.get("user", me)?.version,
        1,
        "version 1, older than the update B dropped, is never kept after the clear",
      );
    } finally {
      await server.acceptWrites().catch(() => {});
      await a.counters.close();
      await b.counters.close();
      await redis.close();
      await server.kill();
      await Deno.remove(dir, { recursive: true });
    }
  },
);

integrationTest(
  "coherence: entries left over from an earlier life of the counters database are never served",
  async (env) => {
    const earlier = await countersDb(env);
    const redis = openRedisCache({ url: env.redisUrl, keyPrefix: env.redisPrefix });
    const first = instance(env, earlier, redis);
    const me = crypto.randomUUID(), peer = crypto.randomUUID();
    await setPostgres(earlier, me, peer, 5);
    assert.deepEqual((await first.counters.read(me)).user, at(peer, 5));
    await first.counters.close();
    // The database is recreated (a dev reset, a restore from backup): the user is at version 1.
    const recreatedUrl = env.countersDatabaseUrl.replace(/\/([^/]+)$/, "/$1_again");
    const recreated = await migratedDatabase(recreatedUrl, "counters");
    const second = instance(env, recreated, redis);
    try {
      await setPostgres(recreated, me, peer, 1);
      assert.deepEqual((await second.counters.read(me)).user, at(peer, 1));
      assert.deepEqual((await second.counters.read(me)).user, at(peer, 1));
    } finally {
      await second.counters.close();
      await redis.close();
      await recreated.end({ timeout: 1 });
      await earlier`drop database if exists ${earlier(recreatedUrl.split("/").pop()!)}`;
    }
  },
);

integrationTest(
  "coherence: an instance that stops its heartbeat makes the others stamp anew and drop their in-process entries",
  async (env) => {
    const local = createLocalCache();
    const { sql, counters, stats, close } = await oneInstance(env, {
      local,
      timings: { instanceDeadMs: 1_000, confirmEveryMs: 100 },
    });
    try {
      const me = crypto.randomUUID(), peer = crypto.randomUUID();
      await setPostgres(sql, me, peer, 1);
      await counters.read(me);
      assert.ok(counters.cached(me)?.user, "held in process");
      // An instance killed with -9 between its commit and its cache write.
      await sql`insert into cache_instances (id, heartbeat_at)
                values (${crypto.randomUUID()}, now() - interval '10 seconds')`;
      await waitFor(() => stats.generations.instance_died === 1, { what: "the death noticed" });
      assert.equal(counters.cached(me)?.user, undefined, "in-process entries dropped");
      assert.equal((await sql`select count(*)::int as n from cache_instances`)[0]!.n, 1);
    } finally {
      await close();
    }
  },
);

integrationTest(
  "coherence: after a stalled event loop the in-process entries are not served until a round trip is back",
  async (env) => {
    const local = createLocalCache();
    const { counters, close } = await oneInstance(env, { local });
    try {
      const me = crypto.randomUUID();
      local.offer("user", me, { version: 1, dialogs: {} });
      await waitFor(() => counters.cached(me)?.user, {
        what: "every other instance knows this one",
      });
      const until = performance.now() + 400;
      while (performance.now() < until) { /* the event loop runs nothing: a stall */ }
      assert.equal(
        counters.cached(me)?.user,
        undefined,
        "live updates may be waiting behind this read",
      );
      await waitFor(() => counters.cached(me)?.user, { what: "a round trip after the stall" });
    } finally {
      await close();
    }
  },
);

integrationTest(
  "coherence: changed() hands the change to this instance's streams first; Redis and the live update follow side by side, and it resolves after both",
  async (env) => {
    const sql = await countersDb(env);
    const shared = openRedisCache({ url: env.redisUrl, keyPrefix: env.redisPrefix });
    const events: string[] = [];
    let releaseWrite = () => {};
    const writeHeld = new Promise<void>((r) => releaseWrite = r);
    // Redis as it is, but each write waits for the test.
    const redis = new Proxy(shared, {
      get(target, property) {
        if (property === "setManyIfNewer") {
          return async (...args: Parameters<RedisCache["setManyIfNewer"]>) => {
            events.push("redis write");
            await writeHeld;
            const result = await target.setManyIfNewer(...args);
            events.push("redis written");
            return result;
          };
        }
        const value = Reflect.get(target, property);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    const live = memoryLive().instance();
    const { counters } = instance(env, sql, redis, {
      live: {
        ...live,
        deliverHere: (changes) => events.push(`here ${changes.map((c) => c.state.version)}`),
        publish(changes, wait) {
          events.push("published");
          return live.publish(changes, wait);
        },
      },
    });
    try {
      const me = crypto.randomUUID(), peer = crypto.randomUUID();
      await waitFor(() => counters.trusted(), { what: "Redis trusted" });
      await setPostgres(sql, me, peer, 2);
      let done = false;
      const changing = counters.changed([userKey(me)]).then(() => done = true);
      await waitFor(() => events.includes("redis write") && events.includes("published"), {
        what: "the Redis write and the live update under way",
      });
      assert.equal(events[0], "here 2", "this instance's streams first");
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(done, false, "the reply waits for Redis");
      releaseWrite();
      await changing;
      assert.equal(events.at(-1), "redis written");
    } finally {
      releaseWrite();
      await counters.close();
      await shared.close();
    }
  },
);

integrationTest(
  "coherence: changed() reaches every instance's in-process cache through the live update",
  async (env) => {
    const sql = await countersDb(env);
    const redis = openRedisCache({ url: env.redisUrl, keyPrefix: env.redisPrefix });
    const live = memoryLive();
    const localB = createLocalCache();
    const a = instance(env, sql, redis, { local: createLocalCache(), live: live.instance() });
    const b = instance(env, sql, redis, { local: localB, live: live.instance() });
    try {
      const me = crypto.randomUUID(), peer = crypto.randomUUID();
      await setPostgres(sql, me, peer, 1);
      await waitFor(() => [a, b].every((i) => i.counters.servesFromMemory()), {
        what: "both serving from memory",
      });
      assert.deepEqual((await b.counters.read(me)).user, at(peer, 1));
      await setPostgres(sql, me, peer, 2);
      await a.counters.changed([userKey(me)]);
      assert.deepEqual(b.counters.cached(me)?.user, at(peer, 2));
    } finally {
      await a.counters.close();
      await b.counters.close();
      await redis.close();
    }
  },
);

integrationTest(
  "coherence: entries users keep reading are confirmed from Redis in batches of at most 200, by version, without reading their states; an unconfirmed one expires",
  async (env) => {
    const real = openRedisCache({ url: env.redisUrl, keyPrefix: env.redisPrefix });
    const batches: number[] = [];
    const stateReads: string[][] = [];
    const redis: RedisCache = Object.assign(Object.create(real), {
      versions(stamp: string, keys: string[]) {
        batches.push(keys.length);
        return real.versions(stamp, keys);
      },
      getMany(stamp: string, keys: string[]) {
        stateReads.push(keys);
        return real.getMany(stamp, keys);
      },
    });
    let t = 0;
    const local = createLocalCache({ ttlMs: 1_000, refreshAfterMs: 500, now: () => t });
    const { sql, counters, stats, close } = await oneInstance(env, { local, redis });
    try {
      const { stamp } = await generationRow(sql);
      const version = { version: 1, dialogs: { [crypto.randomUUID()]: 2 } };
      const users = Array.from({ length: 450 }, () => crypto.randomUUID());
      await real.setManyIfNewer(
        stamp,
        users.map((userId) => ({ key: userKey(userId), state: version })),
      );
      const gone = crypto.randomUUID(); // never in Redis
      for (const u of [...users, gone]) local.offer("user", u, version);
      t = 600;
      for (const u of [...users, gone]) assert.ok(counters.cached(u)?.user);
      await waitFor(() => stats.lookups.refreshed === 451, { what: "all 451 users refreshed" });
      assert.ok(batches.length >= 3 && batches.every((n) => n <= 200), `batches: ${batches}`);
      assert.deepEqual(stateReads, [], "the same versions: no state was read");
      t = 1_500; // past the first time to live, within the confirmation's
      assert.ok(users.every((u) => counters.cached(u)?.user), "every entry in Redis was confirmed");
      assert.equal(
        counters.cached(gone)?.user,
        undefined,
        "missing from Redis, so never confirmed",
      );
    } finally {
      await close();
    }
  },
);

integrationTest(
  "coherence: thousands of entries falling due at once are confirmed in paced batches, not back to back, and all within the window",
  async (env) => {
    const real = openRedisCache({ url: env.redisUrl, keyPrefix: env.redisPrefix });
    const batches: number[] = [];
    const redis: RedisCache = Object.assign(Object.create(real), {
      versions(stamp: string, keys: string[]) {
        batches.push(keys.length);
        return real.versions(stamp, keys);
      },
    });
    let t = 0;
    // The default window: reported after 5 s, expired after 10 s, so paced over 2.5 s.
    const local = createLocalCache({ ttlMs: 10_000, refreshAfterMs: 5_000, now: () => t });
    const { sql, counters, stats, close } = await oneInstance(env, { local, redis });
    try {
      const { stamp } = await generationRow(sql);
      const version = { version: 1, dialogs: { [crypto.randomUUID()]: 2 } };
      const users = Array.from({ length: 4_000 }, () => crypto.randomUUID());
      await real.setManyIfNewer(
        stamp,
        users.map((userId) => ({ key: userKey(userId), state: version })),
      );
      for (const u of users) local.offer("user", u, version);
      t = 6_000;
      for (const u of users) assert.ok(counters.cached(u)?.user);
      await waitFor(() => stats.lookups.refreshed === users.length, {
        what: "every user confirmed",
      });
      // Back to back they would go as 20 batches of 200; paced, about 32 keys every 20 ms.
      assert.ok(batches.length >= 40, `${batches.length} batches: ${batches}`);
      assert.ok(Math.max(...batches) < 200, `batches: ${batches}`);
      t = 15_000; // past the first time to live
      assert.ok(users.every((u) => counters.cached(u)?.user), "every entry was confirmed");
    } finally {
      await close();
    }
  },
);

integrationTest(
  "coherence: a change event this instance missed is noticed by the background confirmation, within the time to live, and no read waits for it",
  async (env) => {
    const real = openRedisCache({ url: env.redisUrl, keyPrefix: env.redisPrefix });
    let t = 0;
    const local = createLocalCache({ ttlMs: 1_000, refreshAfterMs: 500, now: () => t });
    const { sql, counters, close } = await oneInstance(env, { local, redis: real });
    try {
      const { stamp } = await generationRow(sql);
      const me = crypto.randomUUID(), peer = crypto.randomUUID();
      const old = { version: 1, dialogs: { [peer]: 1 } };
      await real.setManyIfNewer(stamp, [{ key: userKey(me), state: old }]);
      local.offer("user", me, old);
      // A change whose live update never reached this instance: only Redis has it.
      const missed = { version: 2, dialogs: { [peer]: 2 } };
      await real.setManyIfNewer(stamp, [{ key: userKey(me), state: missed }]);
      t = 600;
      assert.deepEqual(counters.cached(me)?.user, old, "served from memory, no wait");
      await waitFor(() => counters.cached(me)?.user.version === 2, {
        what: "the missed change to be kept",
      });
      assert.deepEqual(counters.cached(me)?.user, missed);
    } finally {
      await close();
    }
  },
);

/** Makes `user` a member of `group` in Postgres, at user version `version`. */
async function joinPostgres(sql: Sql, user: string, group: string, version: number) {
  await sql`
    insert into group_members (user_id, group_id, member, joined_seq, read_seq, muted, version)
    values (${user}, ${group}, true, 0, 0, false, 1)`;
  await sql`
    insert into counter_versions (user_id, version) values (${user}, ${version})
    on conflict (user_id) do update set version = excluded.version`;
}

/** Sets a group's newest seq in Postgres; its version is the seq. */
async function setGroupPostgres(sql: Sql, group: string, lastSeq: number) {
  await sql`
    insert into group_counters (group_id, last_seq, version) values (${group}, ${lastSeq}, ${lastSeq})
    on conflict (group_id) do update set last_seq = excluded.last_seq, version = excluded.version`;
}

const groupAt = (lastSeq: number): GroupCounters => ({
  version: lastSeq,
  lastSeq,
  deleted: [],
  mentionsAll: [],
});

/** The unread of `group` in the composed counters `read` served. */
function groupUnread(
  composed: { user: UserCounters; group: (id: string) => unknown },
  group: string,
) {
  assert.ok(composed.user.groups?.[group], "a member of the group");
  return (composed.group(group) as GroupCounters | undefined)?.lastSeq;
}

integrationTest(
  "coherence: read() takes the user, then its groups' misses in one Redis MGET, then the rest in one Postgres load",
  async (env) => {
    const real = openRedisCache({ url: env.redisUrl, keyPrefix: env.redisPrefix });
    const mgets: string[][] = [];
    const redis: RedisCache = Object.assign(Object.create(real), {
      getMany(stamp: string, keys: string[]) {
        mgets.push(keys);
        return real.getMany(stamp, keys);
      },
    });
    const { sql, counters, stats, close } = await oneInstance(env, { redis });
    try {
      const me = crypto.randomUUID();
      const groups = [1, 2, 3].map(() => crypto.randomUUID());
      for (const [i, g] of groups.entries()) {
        await joinPostgres(sql, me, g, 1);
        await setGroupPostgres(sql, g, i + 1);
      }
      const { stamp } = await generationRow(sql);
      // The second group is in Redis already, at a version Postgres has too.
      await real.setManyIfNewer(stamp, [{ key: groupKey(groups[1]!), state: groupAt(2) }]);
      const composed = await counters.read(me);
      assert.deepEqual(groups.map((g) => groupUnread(composed, g)), [1, 2, 3]);
      assert.deepEqual(mgets, [[userKey(me)], groups.map(groupKey)], "two round trips to Redis");
      assert.equal(stats.loads, 3, "the user and the two groups Redis did not hold");
      assert.deepEqual(
        await real.getMany(stamp, groups.map(groupKey)),
        [groupAt(1), groupAt(2), groupAt(3)],
        "the misses filled Redis",
      );
      await counters.read(me);
      assert.equal(stats.loads, 3, "then every part is a Redis hit");
    } finally {
      await close();
    }
  },
);

integrationTest(
  "coherence: a group change made on instance A is served by instance B once changed() returns, through Redis",
  async (env) => {
    const { sql, a, b, admin, close } = await twoInstancesOnPrivateRedis(env);
    try {
      const me = crypto.randomUUID(), group = crypto.randomUUID();
      await joinPostgres(sql, me, group, 1);
      await setGroupPostgres(sql, group, 1);
      await settled(sql, admin, "c:", [a.counters, b.counters]);
      assert.equal(groupUnread(await b.counters.read(me), group), 1, "B's Redis holds seq 1");
      // A group message: the group's state changes, no member's does.
      await setGroupPostgres(sql, group, 2);
      await a.counters.changed([groupKey(group)]);
      // Here the reply may be published: B must serve seq 2 from now on.
      assert.equal(groupUnread(await b.counters.read(me), group), 2);
      assert.equal(b.stats.loads, 2, "B read the new group state from Redis, not Postgres");
    } finally {
      await close();
    }
  },
);

integrationTest(
  "coherence: a group change whose Redis write is refused marks the cache unsafe, and no instance serves the old group state",
  async (env) => {
    const { server, sql, a, b, admin, close } = await twoInstancesOnPrivateRedis(env);
    try {
      const me = crypto.randomUUID(), group = crypto.randomUUID();
      await joinPostgres(sql, me, group, 1);
      await setGroupPostgres(sql, group, 1);
      await settled(sql, admin, "c:", [a.counters, b.counters]);
      assert.equal(groupUnread(await b.counters.read(me), group), 1);
      await server.refuseWrites();
      await setGroupPostgres(sql, group, 2);
      await a.counters.changed([groupKey(group)]);
      assert.equal(a.stats.generations.write_failed, 1, JSON.stringify(a.stats));
      assert.equal(groupUnread(await b.counters.read(me), group), 2, "B never serves seq 1");
      await server.acceptWrites();
    } finally {
      await close();
    }
  },
);

integrationTest(
  "coherence: a group change reaches every instance's in-process cache through one live update, and cached() composes only what memory holds whole",
  async (env) => {
    const sql = await countersDb(env);
    const redis = openRedisCache({ url: env.redisUrl, keyPrefix: env.redisPrefix });
    const live = memoryLive();
    const published: string[][] = [];
    const liveA = live.instance();
    const a = instance(env, sql, redis, {
      local: createLocalCache(),
      live: {
        ...liveA,
        publish(changes, wait) {
          published.push(changes.map((c) => c.key));
          return liveA.publish(changes, wait);
        },
      },
    });
    const localB = createLocalCache();
    const b = instance(env, sql, redis, { local: localB, live: live.instance() });
    try {
      const me = crypto.randomUUID(), group = crypto.randomUUID();
      await joinPostgres(sql, me, group, 1);
      await setGroupPostgres(sql, group, 1);
      await waitFor(() => [a, b].every((i) => i.counters.servesFromMemory()), {
        what: "both serving from memory",
      });
      assert.equal(b.counters.cached(me), undefined, "nothing in memory yet");
      await b.counters.read(me);
      assert.equal(groupUnread(b.counters.cached(me)!, group), 1, "the user and its group held");
      await setGroupPostgres(sql, group, 2);
      await a.counters.changed([groupKey(group)]);
      assert.deepEqual(published, [[groupKey(group)]], "one live update, for the group only");
      assert.equal(groupUnread(b.counters.cached(me)!, group), 2);

      // A member whose group is not in memory is not served from memory.
      const other = crypto.randomUUID(), otherGroup = crypto.randomUUID(); // neither read yet
      localB.offer("user", other, {
        version: 1,
        dialogs: {},
        groups: {
          [otherGroup]: {
            joinedSeq: 0,
            readSeq: 0,
            muted: false,
            own: [],
            mentions: [],
          },
        },
      });
      assert.equal(b.counters.cached(other), undefined, "its group's state is missing");
    } finally {
      await a.counters.close();
      await b.counters.close();
      await redis.close();
    }
  },
);

integrationTest(
  "coherence: a peer's live update loaded before this instance's cache was cleared, arriving after it, is never served over a newer change the instance missed",
  async (env) => {
    const sql = await countersDb(env);
    const real = openRedisCache({ url: env.redisUrl, keyPrefix: env.redisPrefix });
    const live = memoryLive();
    const local = createLocalCache();
    const a = instance(env, sql, real, { local, live: live.instance() });
    // Another instance: what it publishes reaches A as a live update.
    const peer = live.instance();
    try {
      await waitFor(() => a.counters.trusted() && a.counters.servesFromMemory(), {
        what: "A serving from memory",
      });
      const { stamp } = await generationRow(sql);
      const me = crypto.randomUUID(), p = crypto.randomUUID();
      await setPostgres(sql, me, p, 5);
      assert.equal((await a.counters.read(me)).user.version, 5);
      assert.equal(a.counters.cached(me)?.user.version, 5, "A holds version 5");
      // Change 1 made version 5 on the peer, which loaded it and then stalled before publishing.
      const loadedByPeer = at(p, 5);
      // A's NATS connection drops (as coherence.ts handles the status), and meanwhile change 2
      // commits version 6, writes Redis, and its live update to A is lost; its saga finishes.
      local.suspend();
      await setPostgres(sql, me, p, 6);
      await real.setManyIfNewer(stamp, [{ key: userKey(me), state: at(p, 6) }]);
      local.resume();
      // The peer wakes up: change 1's live update reaches A after the clear.
      await peer.publish([{ key: userKey(me), state: loadedByPeer }]);
      const served = a.counters.cached(me)?.user.version;
      assert.ok(served === undefined || served >= 6, `A served version ${served} from memory`);
      assert.equal((await a.counters.read(me)).user.version, 6, "a read finds change 2");
      assert.equal(a.counters.cached(me)?.user.version, 6, "then holds it");
    } finally {
      await a.counters.close();
      await real.close();
    }
  },
);

integrationTest(
  "coherence: a load in flight when a newer change's live update arrives is not kept over it, whether or not the key was held",
  async (env) => {
    const sql = await countersDb(env);
    const real = openRedisCache({ url: env.redisUrl, keyPrefix: env.redisPrefix });
    const live = memoryLive();
    let loading = () => {};
    const loadStarted = new Promise<void>((r) => loading = r);
    let release = () => {};
    const released = new Promise<void>((r) => release = r);
    const a = instance(env, sql, real, {
      local: createLocalCache(),
      live: live.instance(),
      loaders: {
        async users(sql, ids) {
          const states = await loadManyUserCounters(sql, ids);
          loading();
          await released;
          return states;
        },
        groups: loadManyGroupCounters,
      },
    });
    const peer = live.instance();
    try {
      await waitFor(() => a.counters.trusted() && a.counters.servesFromMemory(), {
        what: "A serving from memory",
      });
      const { stamp } = await generationRow(sql);
      const me = crypto.randomUUID(), p = crypto.randomUUID();
      await setPostgres(sql, me, p, 6);
      // A read misses Redis and loads version 6 from Postgres, then is held up.
      const reading = a.counters.read(me);
      await loadStarted;
      // Change 3 commits version 7, writes Redis, and A applies its live update: its saga ends.
      await setPostgres(sql, me, p, 7);
      await real.setManyIfNewer(stamp, [{ key: userKey(me), state: at(p, 7) }]);
      await peer.publish([{ key: userKey(me), state: at(p, 7) }]);
      release();
      assert.equal((await reading).user.version, 6, "the read began before change 3");
      const served = a.counters.cached(me)?.user.version;
      assert.ok(served === undefined || served >= 7, `A served version ${served} from memory`);
      assert.equal((await a.counters.read(me)).user.version, 7);
    } finally {
      await a.counters.close();
      await real.close();
    }
  },
);
