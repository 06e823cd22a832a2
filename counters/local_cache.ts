/**
 * An in-process cache of users' counters in front of Redis. It is kept current by the change events
 * every counters instance receives (live updates) and by this instance's own refreshes; versions
 * decide, so an older value never replaces a newer one. While change events may be missed (NATS
 * disconnected) it is suspended and serves nothing.
 */
import type { UserCounters } from "./counters.ts";

/** The in-process cache. */
export interface LocalCache {
  get(userId: string): UserCounters | undefined;
  /** Keeps `counters` unless a newer version is held. */
  offer(userId: string, counters: UserCounters): void;
  /** Drops everything and serves nothing until resume(). */
  suspend(): void;
  resume(): void;
  readonly size: number;
}

/** Options of the in-process cache. */
export interface LocalCacheOptions {
  /** Entries beyond this are evicted, least recently stored first. */
  maxEntries?: number;
  /** An entry older than this is not served: a bound should a change event ever be missed. */
  ttlMs?: number;
  now?: () => number;
}

/** Creates an empty, active cache. */
export function createLocalCache(options: LocalCacheOptions = {}): LocalCache {
  const maxEntries = options.maxEntries ?? 100_000;
  const ttlMs = options.ttlMs ?? 10_000;
  const now = options.now ?? Date.now;
  const entries = new Map<string, { counters: UserCounters; storedAt: number }>();
  let suspended = false;
  return {
    get(userId) {
      if (suspended) return undefined;
      const entry = entries.get(userId);
      if (!entry) return undefined;
      if (now() - entry.storedAt > ttlMs) {
        entries.delete(userId);
        return undefined;
      }
      return entry.counters;
    },
    offer(userId, counters) {
      if (suspended) return;
      const held = entries.get(userId);
      if (held && held.counters.version > counters.version) return;
      // Re-inserting moves the entry to the end, so the Map's order is the eviction order.
      entries.delete(userId);
      entries.set(userId, { counters, storedAt: now() });
      if (entries.size > maxEntries) entries.delete(entries.keys().next().value!);
    },
    suspend() {
      suspended = true;
      entries.clear();
    },
    resume() {
      suspended = false;
    },
    get size() {
      return entries.size;
    },
  };
}
