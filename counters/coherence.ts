/**
 * Cache coherence: the one place that decides what a counters read may serve, and what a change
 * must do before the world hears of it.
 *
 * Every cache holds states by key (counters/cache_keys.ts): `user:<id>` a user's, `group:<id>` a
 * group's, each with its own version. A user's counters are composed on read from the user's
 * state and its groups' states, so a group message changes one group entry, not every member's.
 *
 * The promise (CONTRACT.md, promise 2 across instances): once a change's reply is published, no
 * counters instance serves an older version of any state the change touched (the group's as much
 * as the users'); once the system is quiet, every instance serves the truth. How each part keeps
 * it:
 *
 * 1. `changed(keys)` runs after every committed change, and before the reply about it is
 *    published (the outbox relay's hook): it loads the users' and groups' states from Postgres,
 *    keeps them in this process and hands them to this instance's live streams at once (committed
 *    states; a stream takes only a newer version), then writes Redis and publishes a live update
 *    that every instance keeps, the two side by side; the reply waits for both. Changes that
 *    come while earlier ones are being refreshed are refreshed together in the next round, whose
 *    load starts after each of them committed.
 * 2. Redis is read and written only in a generation this instance confirmed less than LEASE_MS ago:
 *    Postgres' `cache_generation` names the stamp and the Redis run it was stamped on, and Redis
 *    must be that run and hold that stamp. A Redis that restarted (empty or from an older snapshot)
 *    or failed over is another run; a flushed one lost its stamp. Then the first instance to notice
 *    stamps it anew: an empty namespace no one has written. Every read and write also checks the
 *    stamp in Redis, so a flush or a new stamp is seen at once.
 * 3. A change whose Redis write did not land (refused, out of memory, timed out, another
 *    generation) marks the cache unsafe in Postgres (a new stamp, no run), which no instance can
 *    confirm, and its reply waits until every lease taken before that has run out. Kept in
 *    Postgres, this survives kill -9 and reaches every instance.
 * 4. An instance whose heartbeat stops died, perhaps between a commit and its cache write (a read
 *    or a cancel, which have no reply to hold back): the others mark the cache unsafe.
 * 5. The in-process cache holds what live updates keep current, and is served only while this
 *    instance is known to be caught up with them: a NATS round trip (flush) sent less than
 *    `localLeaseMs` ago has come back, so every change published before it was sent has been
 *    applied. A change waits until every other live instance acknowledged its live update, or
 *    until `localLeaseMs` and a margin have passed, after which an instance that has not applied
 *    it cannot be serving from memory. The cache is cleared (a new epoch) when NATS disconnects or
 *    reconnects (updates were lost) and when the generation changes; a value loaded in an earlier
 *    epoch is dropped when it arrives. A live update has no epoch (its state may have been loaded
 *    by a peer before the clear and published after, while a newer change's update was lost), so
 *    it only moves forward an entry this instance loaded in the current epoch; a key not held is
 *    only marked at that version, never served, so that a load begun before it is not kept.
 *
 * No transaction is open while Redis or NATS is called.
 */
import type { NatsConnection } from "@nats-io/transport-node";
import type { Sql } from "../shared/db.ts";
import type { Logger } from "../shared/log.ts";
import { groupCommit } from "../shared/group_commit.ts";
import type { Counter } from "../shared/metrics.ts";
import { type CachedState, groupKey, normalKey, parseKey, userKey } from "./cache_keys.ts";
import { loadManyGroupCounters, loadManyUserCounters } from "./counter_store.ts";
import { type GroupCounters, groupIdsOf, type GroupLookup, type UserCounters } from "./counters.ts";
import type { LiveUpdates } from "./live_updates.ts";
import type { LocalCache } from "./local_cache.ts";
import { type CacheEntry, GenerationMismatch, type RedisCache } from "./redis_cache.ts";

/** A user's state with the states of its groups: what a user's counters are composed of. */
export interface ComposedCounters {
  user: UserCounters;
  /** The state of each of the user's groups (never undefined for one of them). */
  group: GroupLookup;
}

/** Counters as the read path serves them, and what a change must do. */
export interface CoherentCounters {
  /**
   * The user's state, then its groups' states: each from this process' cache, else Redis in a
   * confirmed generation (the misses in one round trip), else Postgres (the rest in one load).
   */
  read(userId: string): Promise<ComposedCounters>;
  /** read() without waiting: when the user and all its groups are in this process' cache. */
  cached(userId: string): ComposedCounters | undefined;
  /** The groups' states, as read() reads them; in order. */
  readGroups(groupIds: string[]): Promise<GroupCounters[]>;
  /**
   * After a committed change of the states of these cache keys (`user:<id>`, `group:<id>`):
   * every cache gets the new versions, or the cache is marked unsafe. When it resolves, a reply
   * about the change may be published.
   */
  changed(keys: string[]): Promise<void>;
  /** Calls `listener` with every change of the state of cache key `key`, from any instance. */
  subscribe(key: string, listener: (state: CachedState) => void): () => void;
  /** Whether Redis may be read now. */
  trusted(): boolean;
  /** Whether the in-process cache may be served now (caught up with live updates). */
  servesFromMemory(): boolean;
  /** Answers when Redis does (readiness). */
  ping(): Promise<unknown>;
  /** Stops the background work and leaves the instance list. Closes neither Redis nor NATS. */
  close(): Promise<void>;
}

/** How states are loaded from Postgres, each kind in one statement, in the order of the ids. */
export interface StateLoaders {
  users(sql: Sql, userIds: string[]): Promise<UserCounters[]>;
  groups(sql: Sql, groupIds: string[]): Promise<GroupCounters[]>;
}

const POSTGRES_LOADERS: StateLoaders = {
  users: loadManyUserCounters,
  groups: loadManyGroupCounters,
};

/** Timings of the coherence rules; the defaults suit production. */
export interface CoherenceTimings {
  /** How long a confirmed generation may be used without confirming it again. */
  leaseMs: number;
  /** How often the generation is confirmed and the heartbeat written. */
  confirmEveryMs: number;
  /** A heartbeat older than this is an instance that died. */
  instanceDeadMs: number;
  /** The in-process cache is served while a NATS round trip sent this recently has come back. */
  localLeaseMs: number;
  /** How often that round trip is made. */
  flushEveryMs: number;
  /** What a live update may take between two NATS servers, on top of localLeaseMs. */
  routeMarginMs: number;
}

const DEFAULT_TIMINGS: CoherenceTimings = {
  leaseMs: 1_000,
  confirmEveryMs: 300,
  instanceDeadMs: 3_000,
  localLeaseMs: 250,
  flushEveryMs: 50,
  routeMarginMs: 100,
};

/** Most keys one background confirmation of in-process entries reads from Redis at once. */
const REFRESH_BATCH = 200;
/** Most keys one round of change refreshes loads, writes and publishes at once. */
const REFRESH_ROUND_KEYS = 1_000;
/** How often a paced confirmation batch goes out while entries are due. */
const REFRESH_TICK_MS = 20;
/** How often entries read before their refresh was due are reported as they come of age. */
const REPORT_READ_EVERY_MS = 100;

/** Dependencies of the coherent counters. */
export interface CoherenceDeps {
  sql: Sql;
  redis: RedisCache;
  local: LocalCache;
  live: LiveUpdates;
  /** Its status tells when live updates were missed; its round trips when they have all arrived. */
  nc?: NatsConnection;
  log: Logger;
  /** Counts lookups by result: local, hit, miss, error, bypass, refreshed, refresh_error. */
  cacheLookups: Counter;
  /** Counts states (users' and groups') read from Postgres. */
  databaseLoads: Counter;
  /** Counts new generations by reason. */
  generationChanges: Counter;
  /** Counts live updates some instance did not acknowledge in time. */
  liveAckTimeouts?: Counter;
  timings?: Partial<CoherenceTimings>;
  /** Postgres' loaders (counters/counter_store.ts) unless given. */
  loaders?: StateLoaders;
}

/** The lookup of a user in no group. */
const NO_GROUPS: GroupLookup = () => undefined;

/**
 * A lookup of `parts` by the ids in `ids`, fastest when asked in that order (as countersJson and
 * countersBody ask).
 */
function inOrder(ids: string[], parts: GroupCounters[]): GroupLookup {
  let next = 0;
  return (groupId) => {
    if (ids[next] !== groupId) next = ids.indexOf(groupId);
    return next < 0 ? undefined : parts[next++];
  };
}

/** A new generation stamp. */
function newStamp(): string {
  return crypto.randomUUID().replaceAll("-", "");
}

/** Starts the coherence rules over the given caches; see the module doc. */
export function createCoherentCounters(deps: CoherenceDeps): CoherentCounters {
  const { sql, redis, local, live, log, cacheLookups, databaseLoads, generationChanges } = deps;
  const timings = { ...DEFAULT_TIMINGS, ...deps.timings };
  // The heartbeat's id is the one live-update acknowledgements carry.
  const instanceId = live.instanceId;
  /** The other live instances, as of the last heartbeat. */
  let peers: string[] = [];
  /** In-process entries are served from then on: when every other instance knows this one. */
  let servingFrom = Infinity;

  // --- Which Redis generation this instance may use ---------------------------------------------
  let trust: { stamp: string; until: number; connection: number } | null = null;
  let lastStamp: string | null = null;

  function trustedStamp(): string | null {
    if (trust && (performance.now() > trust.until || redis.connection !== trust.connection)) {
      trust = null;
    }
    return trust?.stamp ?? null;
  }

  /** A stamp seen in Postgres that differs from the last one: entries of others may be gone. */
  function noteStamp(stamp: string, reason: string) {
    if (lastStamp !== null && stamp !== lastStamp) {
      local.clear();
      generationChanges.inc({ reason });
    }
    lastStamp = stamp;
  }

  let confirming: Promise<string | null> | undefined;
  let lastFailure = -Infinity;
  /** Confirms (or stamps anew) the generation; one at a time; null when Redis cannot be used. */
  function confirm(): Promise<string | null> {
    confirming ??= confirmOnce()
      .catch((err) => {
        log.debug("cache generation not confirmed; reading Postgres", { err });
        trust = null;
        lastFailure = performance.now();
        return null;
      })
      .finally(() => confirming = undefined);
    return confirming;
  }

  /** The trusted stamp, confirming first unless a confirmation failed a moment ago (Redis down). */
  function usableStamp(): Promise<string | null> | string | null {
    const stamp = trustedStamp();
    if (stamp !== null) return stamp;
    if (performance.now() - lastFailure < timings.confirmEveryMs) return null;
    return confirm();
  }

  async function confirmOnce(): Promise<string | null> {
    const started = performance.now();
    const connection = redis.connection;
    // The heartbeat, the instances that stopped beating, and the generation, in one statement.
    const [row] = await sql<
      { stamp: string; redis_run_id: string | null; dead: number; instances: string[] }[]
    >`
      with dead as (
        delete from cache_instances
        where heartbeat_at < now() - make_interval(secs => ${timings.instanceDeadMs / 1000})
          and id <> ${instanceId}
        returning id
      ), beat as (
        insert into cache_instances (id) values (${instanceId})
        on conflict (id) do update set heartbeat_at = now()
      ), bumped as (
        update cache_generation set stamp = ${newStamp()}, redis_run_id = null, changed_at = now()
        where exists (select 1 from dead)
        returning stamp
      )
      select coalesce(b.stamp, g.stamp) as stamp,
             case when b.stamp is null then g.redis_run_id end as redis_run_id,
             (select count(*) from dead)::int as dead,
             array(select id::text from cache_instances
                   where id not in (select id from dead)) as instances
      from cache_generation g left join bumped b on true`;
    if (!row) throw new Error("cache_generation has no row (migrations not applied?)");
    peers = row.instances.filter((id) => id !== instanceId);
    // Every other instance reads the list within one interval: then it waits for this one's acks.
    if (servingFrom === Infinity) servingFrom = started + 2 * timings.confirmEveryMs + 100;
    if (row.dead > 0) {
      log.warn("a counters instance stopped its heartbeat; the cache is stamped anew", {
        instances: row.dead,
      });
    }
    noteStamp(row.stamp, row.dead > 0 ? "instance_died" : "other_instance");
    const redisNow = await redis.identity();
    if (redis.connection !== connection) return null;
    if (row.redis_run_id === redisNow.runId && redisNow.stamp === row.stamp) {
      trust = { stamp: row.stamp, until: started + timings.leaseMs, connection };
      return row.stamp;
    }
    // Another Redis run, a flushed Redis, or an unsafe cache: a new, empty namespace. Postgres
    // names it first (still unsafe), then Redis holds it, then Postgres names the run: a crash
    // between the steps leaves it unsafe, and the next confirmation starts again. `changed_at` is
    // when the cache was last marked unsafe, so stamping leaves it alone.
    trust = null;
    const next = newStamp();
    const [named] = await sql`
      update cache_generation set stamp = ${next}, redis_run_id = null
      where stamp = ${row.stamp}
      returning stamp`;
    // Another instance changed it first; the next confirmation sees its stamp.
    if (!named) return null;
    lastStamp = next;
    if (!await redis.swapGeneration(redisNow.stamp, next)) return null;
    const [stamped] = await sql`
      update cache_generation set redis_run_id = ${redisNow.runId}
      where stamp = ${next}
      returning stamp`;
    if (!stamped || redis.connection !== connection) return null;
    const reason = row.redis_run_id === null
      ? "unsafe"
      : row.redis_run_id !== redisNow.runId
      ? "redis_restarted"
      : "redis_lost_stamp";
    local.clear();
    generationChanges.inc({ reason });
    log.warn("Redis stamped with a new cache generation", { reason, runId: redisNow.runId });
    trust = { stamp: next, until: started + timings.leaseMs, connection };
    return next;
  }

  /**
   * Marks the cache unsafe in Postgres (unless it is already) and waits until no instance can
   * still use a generation confirmed before: then a reply about the change may go out.
   */
  async function markUnsafe(reason: string, err?: unknown): Promise<void> {
    trust = null;
    const [row] = await sql<{ wait_ms: number; bumped: boolean }[]>`
      with bumped as (
        update cache_generation set stamp = ${newStamp()}, redis_run_id = null, changed_at = now()
        where redis_run_id is not null
        returning changed_at
      )
      select greatest(0, extract(epoch from
               coalesce((select changed_at from bumped), g.changed_at)
               + make_interval(secs => ${(timings.leaseMs + 500) / 1000}) - clock_timestamp())
             * 1000)::float8 as wait_ms,
             exists (select 1 from bumped) as bumped
      from cache_generation g`;
    if (row?.bumped) {
      generationChanges.inc({ reason });
      log.warn("cache marked unsafe; Redis is read again once stamped anew", { reason, err });
    }
    if (row && row.wait_ms > 0) await new Promise((r) => setTimeout(r, row.wait_ms));
  }

  /** Offers a state to this process' cache under its key. */
  function keepLocal(key: string, state: CachedState, epoch: number) {
    const { kind, id } = parseKey(key);
    local.offer(kind, id, state, epoch);
  }

  /** This process' entry of a key (the read path's lookups by user id skip making the key). */
  function heldLocal(key: string): CachedState | undefined {
    const { kind, id } = parseKey(key);
    return local.get(kind, id);
  }

  // --- Loads from Postgres ----------------------------------------------------------------------
  const loaders = deps.loaders ?? POSTGRES_LOADERS;
  const inFlight = new Map<string, Promise<CachedState>>();

  /** The keys' states from Postgres: users in one statement, groups in another, in order. */
  async function loadStates(keys: string[]): Promise<CachedState[]> {
    databaseLoads.inc({}, keys.length);
    const users: string[] = [];
    const groups: string[] = [];
    const parsed = keys.map(parseKey);
    for (const { kind, id } of parsed) (kind === "user" ? users : groups).push(id);
    const [userStates, groupStates] = await Promise.all([
      users.length > 0 ? loaders.users(sql, users) : [],
      groups.length > 0 ? loaders.groups(sql, groups) : [],
    ]);
    let u = 0, g = 0;
    return parsed.map(({ kind }) => kind === "user" ? userStates[u++]! : groupStates[g++]!);
  }

  /**
   * Read misses: one Postgres load for the keys not already being loaded, however many requests
   * wait for them; then Redis is filled.
   */
  function loadOnce(keys: string[], stamp: string | null): Promise<CachedState[]> {
    const missing = keys.filter((key) => !inFlight.has(key));
    if (missing.length > 0) {
      const batch = (async () => {
        const epoch = local.epoch;
        const states = await loadStates(missing);
        const entries = missing.map((key, i) => ({ key, state: states[i]! }));
        for (const { key, state } of entries) keepLocal(key, state, epoch);
        // A fill that fails leaves nothing stale behind: the key was missing, and a newer
        // version's writer checks its own write.
        if (stamp !== null && stamp === trustedStamp()) {
          await redis.setManyIfNewer(stamp, entries).catch(() => {});
        }
        return states;
      })();
      for (const [i, key] of missing.entries()) {
        const one: Promise<CachedState> = batch.then((states) => states[i]!)
          .finally(() => inFlight.get(key) === one && inFlight.delete(key));
        inFlight.set(key, one);
      }
    }
    return Promise.all(keys.map((key) => inFlight.get(key)!));
  }

  /**
   * The keys' states: this process' cache, else Redis in a confirmed generation (the misses in one
   * MGET), else Postgres (the rest in one load).
   */
  async function readStates(keys: string[]): Promise<CachedState[]> {
    const usable = localUsable();
    const found = keys.map((key) => usable ? heldLocal(key) : undefined);
    // Positions in `keys` of the states not found yet.
    let misses = [...found.keys()].filter((i) => found[i] === undefined);
    if (misses.length < keys.length) {
      cacheLookups.inc({ result: "local" }, keys.length - misses.length);
    }
    if (misses.length === 0) return found as CachedState[];
    const stamp = await usableStamp();
    if (stamp === null) {
      cacheLookups.inc({ result: "bypass" }, misses.length);
    } else {
      const epoch = local.epoch;
      try {
        const fromRedis = await redis.getMany(stamp, misses.map((i) => keys[i]!));
        for (const [j, state] of fromRedis.entries()) {
          if (state === null) continue;
          keepLocal(keys[misses[j]!]!, state, epoch);
          found[misses[j]!] = state;
        }
        const stillMissing = misses.filter((i) => found[i] === undefined);
        const hits = misses.length - stillMissing.length;
        if (hits > 0) cacheLookups.inc({ result: "hit" }, hits);
        if (stillMissing.length > 0) cacheLookups.inc({ result: "miss" }, stillMissing.length);
        misses = stillMissing;
      } catch (err) {
        if (err instanceof GenerationMismatch) {
          trust = null;
          void confirm();
        }
        cacheLookups.inc({ result: "error" }, misses.length);
        log.debug("cache read failed; reading Postgres", { keys: misses.length, err });
      }
    }
    if (misses.length > 0) {
      const loaded = await loadOnce(misses.map((i) => keys[i]!), stamp);
      for (const [j, i] of misses.entries()) found[i] = loaded[j];
    }
    return found as CachedState[];
  }

  /** The user's state composed with its groups' states, given in the order of its group ids. */
  function compose(user: UserCounters, groupIds: string[], groups: GroupCounters[]) {
    if (groupIds.length === 0) return { user, group: NO_GROUPS };
    const byId = new Map(groupIds.map((id, i) => [id, groups[i]!]));
    return { user, group: (id: string) => byId.get(id) };
  }

  // --- Live updates and NATS -----------------------------------------------------------------
  // Messages on one connection arrive in order, so when a round trip's answer is back, every live
  // update sent to this instance before it has been applied.
  let lastRoundTripSent = -Infinity;
  let running = true;
  const flush = deps.nc ? () => deps.nc!.flush() : () => Promise.resolve();
  const roundTrips = (async () => {
    while (running) {
      const sent = performance.now();
      try {
        await flush();
        lastRoundTripSent = sent;
      } catch { /* not caught up: the lease runs out */ }
      await new Promise((r) => setTimeout(r, timings.flushEveryMs));
    }
  })();
  function localUsable(): boolean {
    const now = performance.now();
    return now >= servingFrom && now - lastRoundTripSent < timings.localLeaseMs;
  }

  // A new connection may lead to another Redis: nothing is trusted until it is confirmed.
  redis.onConnection((connected) => {
    trust = null;
    if (connected) void confirm();
  });
  // A live update refreshes what this instance loaded; a key it does not hold is only marked.
  live.onChange((key, state) => {
    const { kind, id } = parseKey(key);
    local.update(kind, id, state);
  });
  // Rare (a user in thousands of groups): a new epoch, so no load begun before is kept either.
  live.onTooLarge((key) => {
    local.clear();
    log.warn("a live update carried only a key; in-process cache cleared", { key });
  });
  if (deps.nc) {
    (async () => {
      for await (const status of deps.nc!.status()) {
        if (status.type === "disconnect") {
          local.suspend();
          log.warn("NATS disconnected; in-process cache suspended");
        } else if (status.type === "reconnect") {
          local.resume();
          log.info("NATS reconnected; in-process cache resumed");
        }
      }
    })().catch(() => {});
  }

  // The entries users keep reading are confirmed from Redis in batches before they expire, so
  // those reads never wait. A confirmation compares versions only (one script per batch, no state
  // moved or parsed); only an entry Redis holds newer (a change event this instance missed) is read
  // whole. A failed or missing confirmation only lets the entry expire.
  //
  // The batches are paced, not sent back to back: entries loaded together (a cold start, a new
  // generation) fall due together, and confirming ten thousand of them at once held the event
  // loop, and Redis' share of the two cores, long enough to show in the reads' p99. Every
  // REFRESH_TICK_MS one batch goes out, sized so that everything due is confirmed by half the
  // window the local cache leaves between reporting an entry and its expiry, counted from the
  // oldest report; an entry reported with less time left than that goes in the next batch.
  // Confirmed at spread-out times, the same entries fall due spread out the next time. At
  // REFRESH_BATCH a tick is full and the next batch follows at once, as before.
  const refreshDue = new Map<string, number>();
  // Reported too close to expiry to wait their turn (read first late in the window): sent first.
  const urgent = new Set<string>();
  const spreadMs = Math.max(REFRESH_TICK_MS, local.confirmWithinMs / 2);
  let refreshing = false;
  local.onRefreshDue((kind, id, msLeft) => {
    const key = `${kind}:${id}`;
    if (msLeft < spreadMs * 1.5) urgent.add(key);
    else refreshDue.set(key, performance.now());
    if (!refreshing) {
      refreshing = true;
      setTimeout(refreshBatches, 0);
    }
  });
  /** How many paced keys the next batch takes: all of them by the oldest one's deadline. */
  function pacedBatchSize(): number {
    const oldest = refreshDue.values().next().value ?? performance.now();
    const ticksLeft = Math.max(1, (oldest + spreadMs - performance.now()) / REFRESH_TICK_MS);
    return Math.ceil(refreshDue.size / ticksLeft);
  }
  async function refreshBatches() {
    while (running && (refreshDue.size > 0 || urgent.size > 0)) {
      const size = Math.min(REFRESH_BATCH, urgent.size + pacedBatchSize());
      const keys: string[] = [];
      for (const due of [urgent, refreshDue]) {
        for (const key of due.keys()) {
          if (keys.length === size) break;
          due.delete(key);
          keys.push(key);
        }
      }
      await confirmBatch(keys);
      if (size < REFRESH_BATCH && refreshDue.size + urgent.size > 0) {
        await new Promise((r) => setTimeout(r, REFRESH_TICK_MS));
      }
    }
    refreshing = false;
  }
  /** Confirms the entries of `keys` from Redis, or keeps the newer states Redis holds. */
  async function confirmBatch(keys: string[]) {
    const epoch = local.epoch;
    try {
      const stamp = await usableStamp();
      if (stamp === null) throw new Error("no confirmed cache generation");
      const versions = await redis.versions(stamp, keys);
      const newer: string[] = [];
      for (const [i, version] of versions.entries()) {
        if (version === null) continue;
        const { kind, id } = parseKey(keys[i]!);
        if (!local.confirm(kind, id, version, epoch)) newer.push(keys[i]!);
      }
      // Held at another version (a missed change event, or one that came meanwhile): the
      // newest of the two is kept.
      if (newer.length > 0) {
        const found = await redis.getMany(stamp, newer);
        for (const [i, state] of found.entries()) {
          if (state) keepLocal(newer[i]!, state, epoch);
        }
      }
      cacheLookups.inc({ result: "refreshed" }, keys.length);
    } catch (err) {
      if (err instanceof GenerationMismatch) trust = null;
      cacheLookups.inc({ result: "refresh_error" }, keys.length);
      log.debug("cache refresh failed; the entries expire", { keys: keys.length, err });
    }
  }

  // An entry read at 4.9 s and next at 10.1 s was never read while due: it is reported as its age
  // passes the refresh age, so users reading every few seconds are not sent to Redis each time.
  const reporter = setInterval(() => local.reportReadEntries(), REPORT_READ_EVERY_MS);

  const confirmer = setInterval(() => void confirm(), timings.confirmEveryMs);
  void confirm();

  /** The user and all its groups from this process' cache, or undefined; never waits. */
  function cached(userId: string): ComposedCounters | undefined {
    if (!localUsable()) return undefined;
    const user = local.get("user", userId) as UserCounters | undefined;
    if (user === undefined) return undefined;
    const groupIds = groupIdsOf(user);
    if (groupIds.length === 0) {
      cacheLookups.inc({ result: "local" });
      return { user, group: NO_GROUPS };
    }
    const parts = local.getAll("group", groupIds) as GroupCounters[] | undefined;
    if (parts === undefined) return undefined;
    cacheLookups.inc({ result: "local" });
    return { user, group: inOrder(groupIds, parts) };
  }

  /**
   * Writes a change's states to Redis in generation `stamp` (taken before they were loaded), or
   * marks the cache unsafe and waits out the leases.
   */
  async function writeRedis(stamp: string | null, entries: CacheEntry[]): Promise<void> {
    if (stamp === null) return await markUnsafe("redis_unavailable");
    const written = await redis.setManyIfNewer(stamp, entries)
      .catch((err: Error) => entries.map(() => err));
    const failed = written.find((r): r is Error => r instanceof Error);
    if (failed) await markUnsafe("write_failed", failed);
  }

  /**
   * Publishes a change's live update; resolves once every other instance applied it, or stopped
   * serving from memory.
   */
  async function publishToPeers(entries: CacheEntry[]): Promise<void> {
    const waitMs = timings.localLeaseMs + timings.routeMarginMs;
    const awaitFrom = peers;
    const acked = await live.publish(entries, { awaitFrom, timeoutMs: waitMs });
    const late = awaitFrom.filter((id) => !acked.has(id));
    if (late.length > 0) {
      deps.liveAckTimeouts?.inc({}, late.length);
      log.debug("live update not acknowledged in time", { instances: late });
    }
  }

  /**
   * Loads the states of `keys` from Postgres, keeps them here, shows them to this instance's
   * streams and writes them to Redis and the other instances.
   */
  async function refresh(keys: string[]): Promise<void> {
    const epoch = local.epoch;
    // The generation is taken before the load, as a read's fill takes it: a state loaded before
    // a generation was stamped may miss a change whose write went to the one before (or failed
    // while a restamp was under way, which marks nothing unsafe), and in the new generation it
    // would stand as the newest. Written into the generation of before the load, it either
    // meets every later change's write there or a generation no one will trust again.
    const stamp = await usableStamp();
    const states = await loadStates(keys);
    const entries: CacheEntry[] = keys.map((key, i) => ({ key, state: states[i]! }));
    for (const { key, state } of entries) keepLocal(key, state, epoch);
    // This instance's streams show the change at once: it is committed, and a stream only ever
    // takes a newer version than it holds. Redis and the other instances hear of it meanwhile;
    // the reply waits for both.
    live.deliverHere(entries);
    await Promise.all([writeRedis(stamp, entries), publishToPeers(entries)]);
  }

  // Changes that arrive while the states of earlier ones are being refreshed wait and go together
  // in the next round: one load, one Redis write and one live update for the union of their keys,
  // in rounds of at most REFRESH_ROUND_KEYS. A round starts after every change in it committed, so
  // each change's states are loaded after its commit. A burst of changes to the same users (the
  // members of many large groups joining at once) then loads each user once per round, where
  // refreshing each change on its own loaded, wrote and published a user once per change, and
  // sixty-four such changes at once held two cores long enough to time out Redis writes and the
  // handlers themselves.
  const refreshTogether = groupCommit(async (changes: string[][]) => {
    const keys = [...new Set(changes.flat())];
    for (let start = 0; start < keys.length; start += REFRESH_ROUND_KEYS) {
      await refresh(keys.slice(start, start + REFRESH_ROUND_KEYS));
    }
    return changes.map(() => undefined);
  });

  async function readGroups(groupIds: string[]): Promise<GroupCounters[]> {
    return await readStates(groupIds.map(groupKey)) as GroupCounters[];
  }

  return {
    cached,
    async read(userId) {
      const held = cached(userId);
      if (held) return held;
      const [user] = await readStates([userKey(userId)]) as UserCounters[];
      const groupIds = Object.keys(user!.groups ?? {});
      if (groupIds.length === 0) return { user: user!, group: NO_GROUPS };
      return compose(user!, groupIds, await readGroups(groupIds));
    },
    readGroups,
    async changed(keys) {
      const unique = [...new Set(keys.map(normalKey))];
      if (unique.length > 0) await refreshTogether(unique);
    },
    subscribe: (key, listener) => live.subscribe(normalKey(key), listener),
    trusted: () => trustedStamp() !== null,
    servesFromMemory: localUsable,
    ping: () => redis.ping(),
    async close() {
      running = false;
      clearInterval(confirmer);
      clearInterval(reporter);
      await roundTrips;
      await confirming;
      await sql`delete from cache_instances where id = ${instanceId}`.catch(() => {});
    },
  };
}
