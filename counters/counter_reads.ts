/**
 * The read path: Redis first, Postgres on a miss or when Redis fails, one Postgres load per user at a
 * time. A user whose cache write failed is read from Postgres until a later write succeeds.
 */
import type { Sql } from "../shared/db.ts";
import type { Logger } from "../shared/log.ts";
import type { Counter } from "../shared/metrics.ts";
import type { CounterCache } from "./counter_cache.ts";
import type { LocalCache } from "./local_cache.ts";
import type { UserCounters } from "./counters.ts";
import { loadManyUserCounters } from "./counter_store.ts";

/** Reads users' counters and refreshes the cache after a change. */
export interface CounterReader {
  read(userId: string): Promise<UserCounters>;
  /** The user's counters if the in-process cache holds them: read() without waiting, or undefined. */
  cached(userId: string): UserCounters | undefined;
  /** Loads the user's counters from Postgres and stores them in the cache if newer. */
  refresh(userId: string): Promise<UserCounters>;
  /** refresh() for several users with one Postgres statement and one Redis round trip. */
  refreshMany(userIds: string[]): Promise<UserCounters[]>;
  /** Retries the cache writes that failed; returns how many users are still not cached safely. */
  retryFailedWrites(): Promise<number>;
}

/** Dependencies of the reader. */
export interface CounterReaderDeps {
  sql: Sql;
  cache: CounterCache;
  log: Logger;
  /** The in-process cache in front of Redis. */
  local: LocalCache;
  /** Counts cache lookups by result (local, hit, miss, error, bypass, refreshed, refresh_error). */
  cacheLookups: Counter;
  /** Counts Postgres loads. */
  databaseLoads: Counter;
}

/** Most users one background refresh reads from Redis at once. */
const REFRESH_BATCH = 200;

/** Creates the reader. */
export function createCounterReader(deps: CounterReaderDeps): CounterReader {
  const { sql, cache, local, log, cacheLookups, databaseLoads } = deps;
  const inFlight = new Map<string, Promise<UserCounters>>();
  // Users whose newest counters may be missing from Redis (it may hold an older version), with the
  // version whose write failed: only a write of that version or a newer one makes Redis safe again.
  const unsafe = new Map<string, number>();

  // Many requests missing the same user share one Postgres load.
  function loadOnce(userId: string): Promise<UserCounters> {
    let pending = inFlight.get(userId);
    if (!pending) {
      pending = loadAndStore(userId).finally(() => inFlight.delete(userId));
      inFlight.set(userId, pending);
    }
    return pending;
  }

  async function loadAndStore(userId: string): Promise<UserCounters> {
    return (await loadAndStoreMany([userId]))[0]!;
  }

  async function loadAndStoreMany(userIds: string[]): Promise<UserCounters[]> {
    if (userIds.length === 0) return [];
    databaseLoads.inc({}, userIds.length);
    const loaded = await loadManyUserCounters(sql, userIds);
    const entries = userIds.map((userId, i) => ({ userId, counters: loaded[i]! }));
    for (const { userId, counters } of entries) local.offer(userId, counters);
    const written = await cache.setManyIfNewer(entries).catch((err: Error) =>
      entries.map(() => err)
    );
    for (const [i, { userId, counters }] of entries.entries()) {
      const err = written[i];
      if (err instanceof Error) {
        unsafe.set(userId, Math.max(counters.version, unsafe.get(userId) ?? 0));
        log.warn("cache write failed; reading this user from Postgres until it succeeds", {
          userId,
          err,
        });
      } else if (counters.version >= (unsafe.get(userId) ?? 0)) unsafe.delete(userId);
    }
    return loaded;
  }

  // The in-process entries users keep reading are confirmed from Redis in batches (one MGET each)
  // before they expire, so those reads never wait for Redis. Batches are small and one at a time:
  // entries stored together fall due together, and one MGET of thousands of users would hold the
  // event loop long enough to show in the reads' p99. A failed or missing refresh only lets the
  // entry expire: the next read then goes to Redis or Postgres as usual.
  const refreshDue = new Set<string>();
  let refreshing = false;
  local.onRefreshDue((userId) => {
    refreshDue.add(userId);
    if (!refreshing) {
      refreshing = true;
      setTimeout(refreshBatches, 0);
    }
  });
  async function refreshBatches() {
    while (refreshDue.size > 0) {
      const userIds: string[] = [];
      for (const userId of refreshDue) {
        refreshDue.delete(userId);
        userIds.push(userId);
        if (userIds.length === REFRESH_BATCH) break;
      }
      try {
        const found = await cache.getMany(userIds);
        for (const [i, counters] of found.entries()) {
          if (counters) local.offer(userIds[i]!, counters);
        }
        cacheLookups.inc({ result: "refreshed" }, userIds.length);
      } catch (err) {
        cacheLookups.inc({ result: "refresh_error" }, userIds.length);
        log.debug("cache refresh failed; the entries expire", { users: userIds.length, err });
      }
    }
    refreshing = false;
  }

  function cached(userId: string): UserCounters | undefined {
    const held = local.get(userId);
    if (held) cacheLookups.inc({ result: "local" });
    return held;
  }

  return {
    cached,
    async read(userId) {
      const held = cached(userId);
      if (held) return held;
      if (unsafe.has(userId)) {
        cacheLookups.inc({ result: "bypass" });
        return await loadOnce(userId);
      }
      try {
        const cached = await cache.get(userId);
        if (cached) {
          cacheLookups.inc({ result: "hit" });
          local.offer(userId, cached);
          return cached;
        }
        cacheLookups.inc({ result: "miss" });
      } catch (err) {
        cacheLookups.inc({ result: "error" });
        log.debug("cache read failed; reading Postgres", { userId, err });
      }
      return await loadOnce(userId);
    },
    refresh: loadAndStore,
    refreshMany: loadAndStoreMany,
    async retryFailedWrites() {
      await loadAndStoreMany([...unsafe.keys()]);
      return unsafe.size;
    },
  };
}
