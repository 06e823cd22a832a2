/**
 * Counters states in Redis (users' and groups', by cache key: counters/cache_keys.ts), in namespaces
 * called generations. Redis says which generation its
 * entries belong to (the `generation` key); a read or write names the generation it trusts and is
 * refused when Redis holds another, so a Redis that was flushed, restarted from an older snapshot
 * or re-stamped by another instance is never read as if it were the one the entries were written
 * for. Which generation is current is decided in counters/coherence.ts; this module is only I/O.
 */
import { Redis } from "ioredis";
import { type CachedState, userKey } from "./cache_keys.ts";

/** Thrown when Redis' generation is not the one a call named. */
export class GenerationMismatch extends Error {
  constructor(expected: string, found: string | null) {
    super(`Redis holds generation ${found ?? "(none)"}, not ${expected}`);
    this.name = "GenerationMismatch";
  }
}

/** What identifies the Redis behind a connection: its process run and the generation it holds. */
export interface RedisIdentity {
  /** Changes whenever Redis restarts (from a snapshot or empty) or another server takes over. */
  runId: string;
  stamp: string | null;
}

/** One cache key's state. */
export interface CacheEntry {
  key: string;
  state: CachedState;
}

/** Reads and writes cached states; every call may reject when Redis is unreachable. */
export interface RedisCache {
  /**
   * The keys' states in generation `stamp`, in order, in one round trip; GenerationMismatch if
   * Redis holds another generation.
   */
  getMany(stamp: string, keys: string[]): Promise<(CachedState | null)[]>;
  /**
   * The versions of the keys' entries in generation `stamp`, in order (null for none), in one
   * round trip and without their states; GenerationMismatch if Redis holds another generation.
   */
  versions(stamp: string, keys: string[]): Promise<(number | null)[]>;
  /**
   * Stores each entry in generation `stamp` unless a newer version is held; per entry `true`
   * (stored), `false` (a newer one is held) or the error (GenerationMismatch, out of memory, ...).
   */
  setManyIfNewer(stamp: string, entries: CacheEntry[]): Promise<(boolean | Error)[]>;
  /** Deletes the keys' entries in generation `stamp`; Redis allows it even when out of memory. */
  deleteMany(stamp: string, keys: string[]): Promise<void>;
  identity(): Promise<RedisIdentity>;
  /** Sets Redis' generation to `next` if it holds `expected` (null: none); false otherwise. */
  swapGeneration(expected: string | null, next: string): Promise<boolean>;
  /** Called with false when the connection closes and true when a new one is ready. */
  onConnection(listener: (connected: boolean) => void): void;
  /** Increases with every new connection: a result is only as good as the connection it came on. */
  readonly connection: number;
  ping(): Promise<unknown>;
  close(): Promise<void>;
}

const GENERATION_KEY = "generation";

/** Most entries one pipeline of writes carries. */
const WRITE_BATCH = 100;

// Entries are "version|json"; writing compares versions so concurrent writers cannot go back in
// time, and checks the generation in the same step so nothing lands in a namespace no one reads.
const SET_IF_NEWER = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local current = redis.call('GET', KEYS[2])
if current then
  local v = tonumber(string.match(current, '^(%d+)|'))
  if v and v >= tonumber(ARGV[2]) then return 0 end
end
redis.call('SET', KEYS[2], ARGV[2] .. '|' .. ARGV[3], 'PX', ARGV[4])
return 1`;

// The versions alone: what a background confirmation compares, without moving or parsing states.
const VERSIONS = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local out = {}
for i = 2, #KEYS do
  local current = redis.call('GET', KEYS[i])
  out[i - 1] = current and tonumber(string.match(current, '^(%d+)|')) or -1
end
return out`;

const SWAP_GENERATION = `
if (redis.call('GET', KEYS[1]) or '') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1`;

/** Options of the Redis cache. */
export interface RedisCacheOptions {
  url: string;
  keyPrefix: string;
  /** How long an entry lives without a write. */
  ttlMs?: number;
  /** How long one command may take before the read falls back to Postgres. */
  commandTimeoutMs?: number;
}

/** The Redis key of a cache key's entry in a generation (before the key prefix). */
export function redisKey(stamp: string, key: string): string {
  return `g:${stamp}:${key}`;
}

/** The Redis key of a user's entry in a generation (before the key prefix). */
export function entryKey(stamp: string, userId: string): string {
  return redisKey(stamp, userKey(userId));
}

/** An entry as stored: "version|json of the rest", so the write script reads the version alone. */
function encode(state: CachedState): string {
  const { version: _, ...rest } = state;
  return JSON.stringify(rest);
}

/** An entry as stored, read back; null for none. */
function decode(raw: string | null): CachedState | null {
  if (raw === null) return null;
  const bar = raw.indexOf("|");
  return { version: Number(raw.slice(0, bar)), ...JSON.parse(raw.slice(bar + 1)) };
}

/** Opens the Redis cache; commands fail fast while Redis is down instead of queueing. */
export function openRedisCache(options: RedisCacheOptions): RedisCache {
  const redis = new Redis(options.url, {
    keyPrefix: options.keyPrefix,
    enableOfflineQueue: false,
    // A command sent on a connection that died is never sent again on the next one: its answer
    // would come from a Redis the caller did not check.
    autoResendUnfulfilledCommands: false,
    maxRetriesPerRequest: 1,
    commandTimeout: options.commandTimeoutMs ?? 500,
    connectTimeout: 2_000,
    retryStrategy: (times) => Math.min(times * 100, 2_000),
    lazyConnect: false,
  });
  // Connection errors surface through failed commands and readiness; this only keeps them quiet.
  redis.on("error", () => {});
  let connection = 0;
  const listeners: ((connected: boolean) => void)[] = [];
  redis.on("ready", () => {
    connection++;
    for (const l of listeners) l(true);
  });
  redis.on("close", () => {
    for (const l of listeners) l(false);
  });
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
  return {
    async getMany(stamp, keys) {
      await ready();
      const [held, ...raw] = await redis.mget(
        GENERATION_KEY,
        ...keys.map((key) => redisKey(stamp, key)),
      );
      if (held !== stamp) throw new GenerationMismatch(stamp, held ?? null);
      return raw.map(decode);
    },
    async versions(stamp, keys) {
      if (keys.length === 0) return [];
      await ready();
      const found = await redis.eval(
        VERSIONS,
        keys.length + 1,
        GENERATION_KEY,
        ...keys.map((key) => redisKey(stamp, key)),
        stamp,
      ) as number | number[];
      if (!Array.isArray(found)) throw new GenerationMismatch(stamp, null);
      return found.map((v) => v < 0 ? null : v);
    },
    async setManyIfNewer(stamp, entries) {
      if (entries.length === 0) return [];
      await ready();
      // In pipelines of WRITE_BATCH: one change of hundreds of users in many groups is megabytes,
      // which one pipeline would not get through within the command timeout on a busy machine.
      const outcomes: (boolean | Error)[] = [];
      for (let start = 0; start < entries.length; start += WRITE_BATCH) {
        const batch = entries.slice(start, start + WRITE_BATCH);
        const pipeline = redis.pipeline();
        for (const { key, state } of batch) {
          pipeline.eval(
            SET_IF_NEWER,
            2,
            GENERATION_KEY,
            redisKey(stamp, key),
            stamp,
            String(state.version),
            encode(state),
            ttl,
          );
        }
        const results = (await pipeline.exec()) ?? [];
        for (let i = 0; i < batch.length; i++) {
          const [err, result] = results[i] ?? [new Error("no reply from Redis"), null];
          outcomes.push(
            err ? err : result === -1 ? new GenerationMismatch(stamp, null) : result === 1,
          );
        }
      }
      return outcomes;
    },
    async deleteMany(stamp, keys) {
      if (keys.length === 0) return;
      await ready();
      await redis.del(...keys.map((key) => redisKey(stamp, key)));
    },
    async identity() {
      await ready();
      const replies = (await redis.pipeline().info("server").get(GENERATION_KEY).exec()) ?? [];
      const [infoErr, info] = replies[0] ?? [new Error("no reply from Redis"), null];
      const [getErr, stamp] = replies[1] ?? [new Error("no reply from Redis"), null];
      if (infoErr) throw infoErr;
      if (getErr) throw getErr;
      const runId = /run_id:(\w+)/.exec(String(info))?.[1];
      if (!runId) throw new Error("Redis did not say its run_id");
      return { runId, stamp: (stamp as string | null) ?? null };
    },
    async swapGeneration(expected, next) {
      await ready();
      return await redis.eval(SWAP_GENERATION, 1, GENERATION_KEY, expected ?? "", next) === 1;
    },
    onConnection(listener) {
      listeners.push(listener);
    },
    get connection() {
      return connection;
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
