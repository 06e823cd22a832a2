/**
 * An in-process cache of counters states, users' and groups' (counters/cache_keys.ts), in front of
 * Redis. Entries are found by kind and id, not by a key string made per read: the read path's
 * lookup costs what it cost before groups. It is kept current by the change events every counters
 * instance receives (live updates) and by this instance's own refreshes; versions
 * decide, so an older value never replaces a newer one. While change events may be missed (NATS
 * disconnected) it is suspended and serves nothing. Every clear starts a new epoch: a value loaded
 * in an earlier epoch (before a disconnect, say) is offered with that epoch and dropped.
 *
 * An entry is served for `ttlMs` after it was last stored or confirmed, a bound should a change event
 * ever be missed. An entry read after `refreshAfterMs` is reported to the refresh listener once, and
 * so is one read before that, as soon as its age passes `refreshAfterMs` (reportReadEntries(), called
 * on a timer: a user reading every 5 s or so would otherwise read at 4.9 s and 10.1 s, and every
 * such read would find its entry expired). So the entries users keep reading are confirmed in
 * batches before they expire and reads never wait.
 * A confirmation names the version it found (in Redis): the entry is kept as it is, object and all,
 * only its clock restarts; nothing is parsed or made again.
 */
import type { CachedState, ParsedKey } from "./cache_keys.ts";

/** Which kind of state an entry holds. */
export type StateKind = ParsedKey["kind"];

/** The in-process cache. */
export interface LocalCache {
  get(kind: StateKind, id: string): CachedState | undefined;
  /** get() of every id, in order, with one look at the clock; undefined when any is missing. */
  getAll(kind: StateKind, ids: readonly string[]): CachedState[] | undefined;
  /**
   * Keeps `state` unless a newer version is held, or unless `epoch` (the epoch when the value
   * was loaded) is given and is no longer the current one.
   */
  offer(kind: StateKind, id: string, state: CachedState, epoch?: number): void;
  /**
   * Restarts the clock of the entry holding `version` (found current elsewhere, at the start of
   * `epoch`), so it is served `ttlMs` more; false when it holds another version or none.
   */
  confirm(kind: StateKind, id: string, version: number, epoch: number): boolean;
  /** Drops every entry and starts a new epoch. */
  clear(): void;
  /** Drops everything and serves nothing until resume(); both start a new epoch. */
  suspend(): void;
  resume(): void;
  /** The current epoch: taken before a load, passed to offer() with its result. */
  readonly epoch: number;
  /**
   * Calls `listener` with each entry read after refreshAfterMs, and with each entry read before
   * that once reportReadEntries() finds it older (once per entry until stored or confirmed again),
   * and how long the entry has left before it expires.
   */
  onRefreshDue(listener: (kind: StateKind, id: string, msLeft: number) => void): void;
  /**
   * Reports the entries read since they were stored or confirmed whose age has passed
   * refreshAfterMs, and drops the expired ones; looks at each entry about once per storing, oldest
   * first.
   */
  reportReadEntries(): void;
  /**
   * The least time between an entry being reported for refresh and its expiry (ttlMs -
   * refreshAfterMs): a confirmation within it keeps the entry served without a gap.
   */
  readonly confirmWithinMs: number;
  readonly size: number;
}

/** Options of the in-process cache. */
export interface LocalCacheOptions {
  /** Entries of one kind beyond this are evicted, least recently stored first. */
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
  /** `stored` numbers each storing (or confirming): it tells a cursor the entry moved since. */
  type Entry = {
    state: CachedState;
    storedAt: number;
    stored: number;
    refreshReported: boolean;
    read: boolean;
  };
  let storings = 0;
  const byKind: Record<StateKind, Map<string, Entry>> = { user: new Map(), group: new Map() };
  /**
   * Where reportReadEntries() goes on in each Map, whose order is the order of storing: the entry
   * it stopped at (too young yet) and the iterator after it. Iterators of a Map see what is
   * stored after they were made, so an entry stored again is met again, in its new place.
   */
  type Cursor = {
    iterator: MapIterator<[string, Entry]>;
    at: { id: string; entry: Entry; stored: number } | undefined;
  };
  const cursorOf = (kind: StateKind): Cursor => ({
    iterator: byKind[kind].entries(),
    at: undefined,
  });
  const cursors: Record<StateKind, Cursor> = { user: cursorOf("user"), group: cursorOf("group") };
  let suspended = false;
  let epoch = 0;
  const clear = () => {
    byKind.user.clear();
    byKind.group.clear();
    cursors.user = cursorOf("user");
    cursors.group = cursorOf("group");
    epoch++;
  };
  let refreshDue: (kind: StateKind, id: string, msLeft: number) => void = () => {};
  /** The entry's state if it may be served at `at`; reports it for refresh when due. */
  function servable(kind: StateKind, id: string, at: number): CachedState | undefined {
    const entries = byKind[kind];
    const entry = entries.get(id);
    if (!entry) return undefined;
    const age = at - entry.storedAt;
    if (age > ttlMs) {
      entries.delete(id);
      return undefined;
    }
    if (age > refreshAfterMs && !entry.refreshReported) {
      entry.refreshReported = true;
      refreshDue(kind, id, ttlMs - age);
    }
    entry.read = true;
    return entry.state;
  }
  /** Reports, oldest first, the entries of `kind` read since stored that are now old enough. */
  function reportRead(kind: StateKind, at: number) {
    const entries = byKind[kind];
    const cursor = cursors[kind];
    for (;;) {
      if (cursor.at === undefined) {
        const next = cursor.iterator.next();
        // At the end: a new iterator next time, which also sees what was stored meanwhile.
        if (next.done) {
          cursors[kind] = cursorOf(kind);
          return;
        }
        const [id, entry] = next.value;
        cursor.at = { id, entry, stored: entry.stored };
      }
      const { id, entry, stored } = cursor.at;
      // Stored or confirmed again since (it is met again further on), or gone.
      if (entries.get(id) !== entry || entry.stored !== stored) {
        cursor.at = undefined;
        continue;
      }
      // Every entry after this one was stored later.
      if (at - entry.storedAt <= refreshAfterMs) return;
      cursor.at = undefined;
      // Expired: it is never served again, so it need not wait for a read to be dropped.
      if (at - entry.storedAt > ttlMs) entries.delete(id);
      else if (entry.read && !entry.refreshReported) {
        entry.refreshReported = true;
        refreshDue(kind, id, ttlMs - (at - entry.storedAt));
      }
    }
  }
  return {
    get(kind, id) {
      if (suspended) return undefined;
      return servable(kind, id, now());
    },
    getAll(kind, ids) {
      if (suspended) return undefined;
      const at = now();
      const states: CachedState[] = [];
      for (let i = 0; i < ids.length; i++) {
        const state = servable(kind, ids[i]!, at);
        if (state === undefined) return undefined;
        states.push(state);
      }
      return states;
    },
    offer(kind, id, state, loadedIn) {
      if (suspended || (loadedIn !== undefined && loadedIn !== epoch)) return;
      const entries = byKind[kind];
      const held = entries.get(id);
      if (held && held.state.version > state.version) return;
      // Re-inserting moves the entry to the end, so the Map's order is the eviction order.
      entries.delete(id);
      // The same version is the same state: keeping the object held keeps its body made once.
      const kept = held && held.state.version === state.version ? held.state : state;
      entries.set(id, {
        state: kept,
        storedAt: now(),
        stored: ++storings,
        refreshReported: false,
        read: false,
      });
      if (entries.size > maxEntries) entries.delete(entries.keys().next().value!);
    },
    confirm(kind, id, version, confirmedIn) {
      if (suspended || confirmedIn !== epoch) return false;
      const entries = byKind[kind];
      const held = entries.get(id);
      if (!held || held.state.version !== version) return false;
      // Moved to the end: the Map's order stays the order of storing (or confirming).
      entries.delete(id);
      held.storedAt = now();
      held.stored = ++storings;
      held.refreshReported = false;
      held.read = false;
      entries.set(id, held);
      return true;
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
    reportReadEntries() {
      if (suspended) return;
      const at = now();
      reportRead("user", at);
      reportRead("group", at);
    },
    confirmWithinMs: ttlMs - refreshAfterMs,
    get size() {
      return byKind.user.size + byKind.group.size;
    },
  };
}
