/**
 * An in-process cache of users' counters in front of Redis. It is kept current by the change events
 * every counters instance receives (live updates) and by this instance's own refreshes; versions
 * decide, so an older value never replaces a newer one. While change events may be missed (NATS
 * disconnected) it is suspended and serves nothing. Every clear starts a new epoch: a value loaded
 * in an earlier epoch (before a disconnect, say) is offered with that epoch and dropped.
 *
 * An entry is served for `ttlMs` after it was last stored or confirmed, a bound should a change event
 * ever be missed. An entry read after `refreshAfterMs` is reported to the refresh listener once, so
 * the entries users keep reading are confirmed in batches before they expire and reads never wait.
 */
import type { UserCounters } from "./counters.ts";

/** The in-process cache. */
export interface LocalCache {
  get(userId: string): UserCounters | undefined;
  /**
   * Keeps `counters` unless a newer version is held, or unless `epoch` (the epoch when the value
   * was loaded) is given and is no longer the current one.
   */
  offer(userId: string, counters: UserCounters, epoch?: number): void;
  /** Drops every entry and starts a new epoch. */
  clear(): void;
  /** Drops everything and serves nothing until resume(); both start a new epoch. */
  suspend(): void;
  resume(): void;
  /** The current epoch: taken before a load, passed to offer() with its result. */
  readonly epoch: number;
  /** Calls `listener` with each user whose entry was read after refreshAfterMs (once per entry). */
  onRefreshDue(listener: (userId: string) => void): void;
  readonly size: number;
}

/** Options of the in-process cache. */
export interface LocalCacheOptions {
  /** Entries beyond this are evicted, least recently stored first. */
  maxEntries?: number;
  /** An entry older than this is not served: a bound should a change event ever be missed. */
  ttlMs?: number;
  /** An entry read when older than this is reported for refresh; half the TTL by default. */
  refreshAfterMs?: number;
  now?: () => number;
}

/** Creates an empty, active cache. */
export function createLocalCache(options: LocalCacheOptions = {}): LocalCache {
  const maxEntries = options.maxEntries ?? 100_000;
  const ttlMs = options.ttlMs ?? 10_000;
  const refreshAfterMs = options.refreshAfterMs ?? ttlMs / 2;
  const now = options.now ?? Date.now;
  const entries = new Map<
    string,
    { counters: UserCounters; storedAt: number; refreshReported: boolean }
  >();
  let suspended = false;
  let epoch = 0;
  const clear = () => {
    entries.clear();
    epoch++;
  };
  let refreshDue: (userId: string) => void = () => {};
  return {
    get(userId) {
      if (suspended) return undefined;
      const entry = entries.get(userId);
      if (!entry) return undefined;
      const age = now() - entry.storedAt;
      if (age > ttlMs) {
        entries.delete(userId);
        return undefined;
      }
      if (age > refreshAfterMs && !entry.refreshReported) {
        entry.refreshReported = true;
        refreshDue(userId);
      }
      return entry.counters;
    },
    offer(userId, counters, loadedIn) {
      if (suspended || (loadedIn !== undefined && loadedIn !== epoch)) return;
      const held = entries.get(userId);
      if (held && held.counters.version > counters.version) return;
      // Re-inserting moves the entry to the end, so the Map's order is the eviction order.
      entries.delete(userId);
      // The same version is the same counters: keeping the object held keeps its body made once.
      const kept = held && held.counters.version === counters.version ? held.counters : counters;
      entries.set(userId, { counters: kept, storedAt: now(), refreshReported: false });
      if (entries.size > maxEntries) entries.delete(entries.keys().next().value!);
    },
    clear,
    suspend() {
      suspended = true;
      clear();
    },
    resume() {
      suspended = false;
      epoch++;
    },
    get epoch() {
      return epoch;
    },
    onRefreshDue(listener) {
      refreshDue = listener;
    },
    get size() {
      return entries.size;
    },
  };
}
