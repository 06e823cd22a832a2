/** The Redis cache of users' counters: versioned writes so an older value never replaces a newer one. */
import { Redis } from "ioredis";
import type { UserCounters } from "./counters.ts";

/** Reads and writes cached counters; every call may reject when Redis is unreachable. */
export interface CounterCache {
  get(userId: string): Promise<UserCounters | null>;
  /** get() for several users in one round trip (MGET), in order. */
  getMany(userIds: string[]): Promise<(UserCounters | null)[]>;
  /** Stores `counters` unless the cache already holds this version or a newer one. */
  setIfNewer(userId: string, counters: UserCounters): Promise<boolean>;
  /** setIfNewer for several users in one round trip; each entry's result or error, in order. */
  setManyIfNewer(
    entries: { userId: string; counters: UserCounters }[],
  ): Promise<(boolean | Error)[]>;
  ping(): Promise<unknown>;
  close(): Promise<void>;
}

// Entries are "version|json"; the script compares versions so concurrent writers cannot go back in time.
const SET_IF_NEWER = `
local current = redis.call('GET', KEYS[1])
if current then
  local v = tonumber(string.match(current, '^(%d+)|'))
  if v and v >= tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[2], 'PX', ARGV[3])
return 1`;

/** Options of the Redis cache. */
export interface CounterCacheOptions {
  url: string;
  keyPrefix: string;
  /** How long an entry lives without a write. */
  ttlMs?: number;
  /** How long one command may take before the read falls back to Postgres. */
  commandTimeoutMs?: number;
}

/** Opens the Redis cache; commands fail fast while Redis is down instead of queueing. */
export function openCounterCache(options: CounterCacheOptions): CounterCache {
  const redis = new Redis(options.url, {
    keyPrefix: options.keyPrefix,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: options.commandTimeoutMs ?? 500,
    connectTimeout: 2_000,
    retryStrategy: (times) => Math.min(times * 100, 2_000),
    lazyConnect: false,
  });
  // Connection errors surface through failed commands and readiness; this only keeps them quiet.
  redis.on("error", () => {});
  const ttl = String(options.ttlMs ?? 10 * 60_000);
  const timeoutMs = options.commandTimeoutMs ?? 500;
  // Without the offline queue a command sent before the first connect would fail; wait for it briefly.
  const ready = (): Promise<void> => {
    if (redis.status !== "connecting" && redis.status !== "connect") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        redis.off("ready", done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      redis.once("ready", done);
    });
  };
  const key = (userId: string) => `user:${userId}`;
  // An entry is "<version>|<dialogs as JSON>".
  const parse = (raw: string | null): UserCounters | null => {
    if (raw === null) return null;
    const bar = raw.indexOf("|");
    return { version: Number(raw.slice(0, bar)), dialogs: JSON.parse(raw.slice(bar + 1)) };
  };
  return {
    async get(userId) {
      await ready();
      return parse(await redis.get(key(userId)));
    },
    async getMany(userIds) {
      if (userIds.length === 0) return [];
      await ready();
      return (await redis.mget(userIds.map(key))).map(parse);
    },
    async setIfNewer(userId, counters) {
      await ready();
      const result = await redis.eval(
        SET_IF_NEWER,
        1,
        key(userId),
        String(counters.version),
        JSON.stringify(counters.dialogs),
        ttl,
      );
      return result === 1;
    },
    async setManyIfNewer(entries) {
      await ready();
      const pipeline = redis.pipeline();
      for (const { userId, counters } of entries) {
        pipeline.eval(
          SET_IF_NEWER,
          1,
          key(userId),
          String(counters.version),
          JSON.stringify(counters.dialogs),
          ttl,
        );
      }
      const results = (await pipeline.exec()) ?? [];
      return entries.map((_, i) => {
        const [err, result] = results[i] ?? [new Error("no reply from Redis"), null];
        return err ?? result === 1;
      });
    },
    ping: async () => {
      await ready();
      return await redis.ping();
    },
    async close() {
      await redis.quit().catch(() => redis.disconnect());
    },
  };
}
