/**
 * An in-process cache of counters states (users' and groups', by cache key: counters/cache_keys.ts)
 * in front of Redis. It is kept current by the change events
 * every counters instance receives (live updates) and by this instance's own refreshes; versions
 * decide, so an older value never replaces a newer one. While change events may be missed (NATS
 * disconnected) it is suspended and serves nothing. Every clear starts a new epoch: a value loaded
 * in an earlier epoch (before a disconnect, say) is offered with that epoch and dropped.
 *
 * An entry is served for `ttlMs` after it was last stored or confirmed, a bound should a change event
 * ever be missed. An entry read after `refreshAfterMs` is reported to the refresh listener once, so
 * the entries users keep reading are confirmed in batches before they expire and reads never wait.
 */
import type { CachedState } from "./cache_keys.ts";

/** The in-process cache. */
export interface LocalCache {
  get(key: string): CachedState | undefined;
  /**
   * Keeps `state` unless a newer version is held, or unless `epoch` (the epoch when the value
   * was loaded) is given and is no longer the current one.
   */
  offer(key: string, state: CachedState, epoch?: number): void;
  /** Drops every entry and starts a new epoch. */
  clear(): void;
  /** Drops everything and serves nothing until resume(); both start a new epoch. */
  suspend(): void;
  resume(): void;
  /** The current epoch: taken before a load, passed to offer() with its result. */
  readonly epoch: number;
  /** Calls `listener` with each key whose entry was read after refreshAfterMs (once per entry). */
  onRefreshDue(listener: (key: string) => void): void;
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
    { state: CachedState; storedAt: number; refreshReported: boolean }
  >();
  let suspended = false;
  let epoch = 0;
  const clear = () => {
    entries.clear();
    epoch++;
  };
  let refreshDue: (key: string) => void = () => {};
  return {
    get(key) {
      if (suspended) return undefined;
      const entry = entries.get(key);
      if (!entry) return undefined;
      const age = now() - entry.storedAt;
      if (age > ttlMs) {
        entries.delete(key);
        return undefined;
      }
      if (age > refreshAfterMs && !entry.refreshReported) {
        entry.refreshReported = true;
        refreshDue(key);
      }
      return entry.state;
    },
    offer(key, state, loadedIn) {
      if (suspended || (loadedIn !== undefined && loadedIn !== epoch)) return;
      const held = entries.get(key);
      if (held && held.state.version > state.version) return;
      // Re-inserting moves the entry to the end, so the Map's order is the eviction order.
      entries.delete(key);
      // The same version is the same state: keeping the object held keeps its body made once.
      const kept = held && held.state.version === state.version ? held.state : state;
      entries.set(key, { state: kept, storedAt: now(), refreshReported: false });
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
