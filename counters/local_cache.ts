/**
 * An in-process cache of counters states, users' and groups' (counters/cache_keys.ts), in front of
 * Redis. Entries are found by kind and id, not by a key string made per read: the read path's
 * lookup costs what it cost before groups. It is kept current by the change events every counters
 * instance receives (live updates) and by this instance's own loads and refreshes; versions
 * decide, so an older value never replaces a newer one. While change events may be missed (NATS
 * disconnected) it is suspended and serves nothing. Every clear starts a new epoch: a value loaded
 * in an earlier epoch (before a disconnect, say) is offered with that epoch and dropped.
 *
 * Only states this instance loaded (offer()) are served. A live update (update()) carries no epoch:
 * a peer may have loaded its state before this cache was cleared and published it after, while a
 * newer change's update was lost in the disconnect. So it only moves forward an entry loaded in the
 * current epoch (which has seen every live update since); for a key not held it leaves a mark, an
 * entry never served, at the highest version heard, so that a load begun before it and returning an
 * older version is not kept. Marks count towards maxEntries and expire like entries; a clear drops
 * them with the rest (a load begun before a clear is dropped by its epoch anyway).
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
   * Keeps and serves `state`, loaded by this instance, unless a newer version is held (or marked),
   * or unless `epoch` (the epoch when the value was loaded) is given and is no longer the current
   * one.
   */
  offer(kind: StateKind, id: string, state: CachedState, epoch?: number): void;
  /**
   * A live update: `state` replaces an older version of an entry this instance loaded in the
   * current epoch. It never makes a servable entry: a key not held is only marked at that version,
   * so that a load of an older one, begun before, is not kept.
   */
  update(kind: StateKind, id: string, state: CachedState): void;
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

/** A cached state, linked into its kind's queue of young or aging entries (in storing order). */
type Entry = {
  readonly id: string;
  state: CachedState;
  storedAt: number;
  refreshReported: boolean;
  read: boolean;
  /** In the aging queue: its age passed refreshAfterMs at a reportReadEntries(). */
  aging: boolean;
  /**
   * Loaded by this instance in the current epoch (and kept current by live updates since): served.
   * Otherwise a mark, made by a live update: never served, a version no own load may go below.
   */
  loaded: boolean;
  prev: Entry | undefined;
  next: Entry | undefined;
};

/** A doubly linked queue of entries, oldest first: moving one to the end allocates nothing. */
type Queue = { head: Entry | undefined; tail: Entry | undefined };

/**
 * One kind's entries: found by id in `byId`, and in storing (or confirming) order in two queues:
 * `young` (not older than refreshAfterMs when last looked at) and `aging` (older; they wait only
 * to expire), so every aging entry was stored before every young one. reportReadEntries() looks
 * at the queues' heads only, so it costs nothing when nothing is due, and a confirmation moves an
 * entry to the end of `young` without touching the Map (no deleted slots, no rehashing).
 */
type Shelf = { byId: Map<string, Entry>; young: Queue; aging: Queue };

const emptyShelf = (): Shelf => ({
  byId: new Map(),
  young: { head: undefined, tail: undefined },
  aging: { head: undefined, tail: undefined },
});

function unlink(queue: Queue, entry: Entry) {
  if (entry.prev) entry.prev.next = entry.next;
  else queue.head = entry.next;
  if (entry.next) entry.next.prev = entry.prev;
  else queue.tail = entry.prev;
  entry.prev = entry.next = undefined;
}

function append(queue: Queue, entry: Entry) {
  entry.prev = queue.tail;
  entry.next = undefined;
  if (queue.tail) queue.tail.next = entry;
  else queue.head = entry;
  queue.tail = entry;
}

/** Creates an empty, active cache. */
export function createLocalCache(options: LocalCacheOptions = {}): LocalCache {
  const maxEntries = options.maxEntries ?? 100_000;
  const ttlMs = options.ttlMs ?? 10_000;
  const refreshAfterMs = options.refreshAfterMs ?? ttlMs / 2;
  const now = options.now ?? Date.now;
  let shelves: Record<StateKind, Shelf> = { user: emptyShelf(), group: emptyShelf() };
  let suspended = false;
  let epoch = 0;
  const clear = () => {
    shelves = { user: emptyShelf(), group: emptyShelf() };
    epoch++;
  };
  let refreshDue: (kind: StateKind, id: string, msLeft: number) => void = () => {};
  function drop(shelf: Shelf, entry: Entry) {
    shelf.byId.delete(entry.id);
    unlink(entry.aging ? shelf.aging : shelf.young, entry);
  }
  /** Restarts the entry's clock: it goes to the end of the young queue. */
  function restart(shelf: Shelf, entry: Entry, at: number) {
    unlink(entry.aging ? shelf.aging : shelf.young, entry);
    entry.aging = false;
    entry.storedAt = at;
    entry.refreshReported = false;
    entry.read = false;
    append(shelf.young, entry);
  }
  /** The entry's state if it may be served at `at`; reports it for refresh when due. */
  function servable(kind: StateKind, id: string, at: number): CachedState | undefined {
    const shelf = shelves[kind];
    const entry = shelf.byId.get(id);
    if (!entry) return undefined;
    const age = at - entry.storedAt;
    if (age > ttlMs) {
      drop(shelf, entry);
      return undefined;
    }
    if (!entry.loaded) return undefined;
    if (age > refreshAfterMs && !entry.refreshReported) {
      entry.refreshReported = true;
      refreshDue(kind, id, ttlMs - age);
    }
    entry.read = true;
    return entry.state;
  }
  /** Reports, oldest first, the entries of `kind` read since stored that are now old enough. */
  function reportRead(kind: StateKind, at: number) {
    const shelf = shelves[kind];
    const { young, aging } = shelf;
    // Every entry behind the head was stored later: the walk stops at the first one too young.
    for (
      let entry = young.head;
      entry && at - entry.storedAt > refreshAfterMs;
      entry = young.head
    ) {
      unlink(young, entry);
      const age = at - entry.storedAt;
      // Expired: it is never served again, so it need not wait for a read to be dropped.
      if (age > ttlMs) {
        shelf.byId.delete(entry.id);
        continue;
      }
      entry.aging = true;
      append(aging, entry);
      if (entry.read && !entry.refreshReported) {
        entry.refreshReported = true;
        refreshDue(kind, entry.id, ttlMs - age);
      }
    }
    for (let entry = aging.head; entry && at - entry.storedAt > ttlMs; entry = aging.head) {
      drop(shelf, entry);
    }
  }
  /**
   * Keeps `state` unless a newer version is held: an own load's (`loaded`) is served from then on,
   * a live update's only where an own load's was (a mark otherwise).
   */
  function keep(kind: StateKind, id: string, state: CachedState, loaded: boolean) {
    const shelf = shelves[kind];
    const held = shelf.byId.get(id);
    if (held) {
      if (held.state.version > state.version) return;
      // The same version is the same state: keeping the object held keeps its body made once.
      if (held.state.version !== state.version) held.state = state;
      if (loaded) held.loaded = true;
      restart(shelf, held, now());
      return;
    }
    const entry: Entry = {
      id,
      state,
      storedAt: now(),
      refreshReported: false,
      read: false,
      aging: false,
      loaded,
      prev: undefined,
      next: undefined,
    };
    shelf.byId.set(id, entry);
    append(shelf.young, entry);
    // The least recently stored: the head of the aging queue, else of the young one.
    if (shelf.byId.size > maxEntries) drop(shelf, (shelf.aging.head ?? shelf.young.head)!);
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
      keep(kind, id, state, true);
    },
    update(kind, id, state) {
      if (!suspended) keep(kind, id, state, false);
    },
    confirm(kind, id, version, confirmedIn) {
      if (suspended || confirmedIn !== epoch) return false;
      const shelf = shelves[kind];
      const held = shelf.byId.get(id);
      if (!held || !held.loaded || held.state.version !== version) return false;
      restart(shelf, held, now());
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
      return shelves.user.byId.size + shelves.group.byId.size;
    },
  };
}
