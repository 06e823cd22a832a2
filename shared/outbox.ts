/** The transactional outbox: enqueue an event inside a transaction; a relay publishes it to JetStream. */
import { headers as natsHeaders } from "@nats-io/nats-core";
import type { JetStreamClient } from "@nats-io/jetstream";
import { pipelinedTransaction, type Sql, type TransactionOptions, type Tx } from "./db.ts";
import { type Envelope, type EventType, HEADERS, subjectFor } from "./events.ts";
import type { Logger } from "./log.ts";
import { recordSpan, spanClock, startSpan, TRACEPARENT } from "./tracing.ts";

/** The LISTEN/NOTIFY channel that wakes the relay. */
const OUTBOX_CHANNEL = "outbox";

/**
 * Writes `event` to the outbox in the caller's transaction; it is published after commit, on the
 * subject the relay derives from its prefix and the event's type. Run the transaction with
 * outboxTransaction() so a relay of this process publishes it straight after the commit.
 */
export async function enqueueEvent(tx: Tx | Sql, event: Envelope): Promise<void> {
  await enqueueEvents(tx, [event]);
}

/**
 * Writes several events to the outbox in one statement (an id given twice is written once). In an
 * outboxTransaction with a healthy relay of this process on its pool, the rows are written already
 * claimed for that relay's lease and handed to it after the commit (see outboxTransaction).
 */
export async function enqueueEvents(tx: Tx | Sql, events: Envelope[]): Promise<void> {
  const unique = [...new Map(events.map((e) => [e.id, e])).values()];
  if (unique.length === 0) return;
  const handoff = handoffs.get(tx);
  const payloads = unique.map((e) => JSON.stringify(e));
  if (handoff) {
    // Taken now, in call order, so the relay publishes in the order the events were enqueued.
    handOver(handoff, unique, payloads, false);
  } else {
    enqueuedIn.add(tx);
  }
  const ids = unique.map((e) => e.id);
  const types = unique.map((e) => e.type);
  const requestIds = unique.map((e) => e.requestId ?? null);
  const traceparents = unique.map((e) => e.traceparent ?? null);
  // A handed-off row is leased from its insert, so no other relay publishes it while this process's
  // does; should this process die after the commit, the lease runs out and any relay claims it. An
  // id enqueued again is unsent again (and leased again when handed off).
  const leaseSecs = handoff ? handoff.leaseMs / 1000 : null;
  await tx`
    insert into outbox (id, type, payload, request_id, traceparent, claimed_until)
    select id, type, payload::jsonb, request_id, traceparent,
           clock_timestamp() + make_interval(secs => ${leaseSecs}::float8)
    from unnest(${ids}::uuid[], ${types}::text[], ${payloads}::text[], ${requestIds}::text[],
                ${traceparents}::text[])
      as e(id, type, payload, request_id, traceparent)
    on conflict (id) do update set sent_at = null, claimed_until = excluded.claimed_until`;
}

/**
 * In an outboxTransaction, has this process's relay publish `events` (msgID = event id) once the
 * transaction committed, without writing an outbox row: for events whose durable record is a row
 * of the caller's own, written in the same transaction. Nothing marks them sent and nothing
 * publishes them again should the process die first, the publish fail or no relay take them: the
 * caller republishes them from its rows, with ids derived from those rows so that JetStream drops a
 * repeat within its duplicate window. Returns false, and hands nothing over, when no healthy relay
 * of this process runs on the pool (the caller's republishing then has to do it).
 */
export function publishAfterCommit(tx: Tx, events: Envelope[]): boolean {
  const handoff = handoffs.get(tx);
  if (handoff === undefined) throw new Error("publishAfterCommit needs an outboxTransaction");
  if (handoff === null) return false;
  handOver(handoff, events, events.map((e) => JSON.stringify(e)), true);
  return true;
}

/** Adds `events` (with their JSON text) to what the transaction hands its relay after the commit. */
function handOver(handoff: Handoff, events: Envelope[], payloads: string[], rowless: boolean) {
  const createdAt = new Date();
  events.forEach((e, i) => {
    handoff.rows.push({
      id: e.id,
      type: e.type,
      subject: null,
      payload: payloads[i]!,
      request_id: e.requestId ?? null,
      traceparent: e.traceparent ?? null,
      created_at: createdAt,
      ...(rowless ? { rowless } : {}),
    });
  });
}

/** The transactions (and pools) an event was enqueued in without a handoff: they need a wake-up. */
const enqueuedIn = new WeakSet<Tx | Sql>();

/** The rows a transaction wrote for a relay of its process, and that relay's lease. */
interface Handoff {
  leaseMs: number;
  rows: OutboxRow[];
}
/** Every outboxTransaction's transaction: its handoff, or null without a healthy relay. */
const handoffs = new WeakMap<Tx | Sql, Handoff | null>();

/**
 * Runs `fn` in a pipelined transaction (pipelinedTransaction). When a relay of this process on the
 * same pool is running and its last batch went out, the events fn enqueues are written claimed for
 * it and handed to it once the transaction committed: it publishes them without claiming them
 * first (a round trip less per batch). Otherwise, once committed, the relays are woken
 * (notifyOutbox) if fn enqueued an event. Events given to publishAfterCommit in fn go to that
 * relay too, after the commit, with no outbox row.
 */
export async function outboxTransaction<T>(
  sql: Sql,
  fn: (tx: Tx, withCommit: (statement: PromiseLike<unknown>) => void) => Promise<T>,
  options?: TransactionOptions,
): Promise<T> {
  let transaction: Tx | undefined;
  let relay: LocalRelay | undefined;
  for (const r of localRelays.get(sql) ?? []) {
    if (r.healthy()) {
      relay = r;
      break;
    }
  }
  const handoff: Handoff | undefined = relay ? { leaseMs: relay.leaseMs, rows: [] } : undefined;
  let marks: string[] = [];
  let result: T;
  try {
    result = await pipelinedTransaction(sql, (tx, withCommit) => {
      transaction = tx;
      handoffs.set(tx, handoff ?? null);
      // The relay's pending "sent" marks travel with this COMMIT instead of a statement of their own.
      marks = relay?.takeMarks() ?? [];
      if (marks.length > 0) withCommit(markSent(tx, marks));
      return fn(tx, withCommit);
    }, options);
  } catch (err) {
    // Marking again is harmless, should this transaction have committed after all.
    if (marks.length > 0) relay!.returnMarks(marks);
    throw err;
  }
  if (handoff && handoff.rows.length > 0) relay!.take(handoff.rows);
  if (transaction && enqueuedIn.has(transaction)) notifyOutbox(sql);
  return result;
}

/**
 * Marks published rows sent and ends their lease; a row enqueued again meanwhile under no lease
 * stays unsent and goes out once more. In a business transaction it can wait only for statements
 * that lock these rows briefly (another relay's claim once their lease ran out) or for another
 * transaction of this process enqueuing one of them again.
 */
function markSent(sql: Sql | Tx, ids: string[]): PromiseLike<unknown> {
  return sql`
    update outbox set sent_at = now(), claimed_until = null
    where id = any(${ids}::uuid[]) and claimed_until is not null`;
}

const notifiers = new WeakMap<Sql, { sending: boolean; again: boolean }>();

/** A relay of this process: how to wake it, and whether its last batch went out. */
interface LocalRelay {
  wake: () => void;
  healthy: () => boolean;
  /** The lease of the rows handed to it. */
  leaseMs: number;
  /** Publishes these committed rows, written claimed for it, without claiming them. */
  take: (rows: OutboxRow[]) => void;
  /** The ids of published rows it has not marked sent yet, for a transaction to mark; now its. */
  takeMarks: () => string[];
  /** Gives back marks taken by a transaction that did not commit. */
  returnMarks: (ids: string[]) => void;
}
const localRelays = new WeakMap<Sql, Set<LocalRelay>>();

/**
 * Wakes the relays on this database: this process's at once; the other instances' with a NOTIFY,
 * unless a relay of this process on the same pool is running and its last batch went out, as it
 * then publishes the new rows itself (the others' polling still finds them should it die). The
 * NOTIFY is sent after the commit, in a statement of its own: inside the business transaction it
 * would hold Postgres' global notify lock through that transaction's commit and serialise every
 * send. Calls made while one is in flight coalesce into one more; a lost notification only costs
 * the relays' polling interval.
 */
export function notifyOutbox(sql: Sql): void {
  const local = localRelays.get(sql);
  let healthy = false;
  for (const relay of local ?? []) {
    relay.wake();
    healthy ||= relay.healthy();
  }
  if (healthy) return;
  let state = notifiers.get(sql);
  if (!state) notifiers.set(sql, state = { sending: false, again: false });
  if (state.sending) {
    state.again = true;
    return;
  }
  state.sending = true;
  const current = state;
  (async () => {
    do {
      current.again = false;
      await sql`select pg_notify(${OUTBOX_CHANNEL}, '')`.catch(() => {});
    } while (current.again);
    current.sending = false;
  })();
}

/** Options of an OutboxRelay. */
export interface OutboxRelayOptions {
  sql: Sql;
  js: JetStreamClient;
  log: Logger;
  /** The subject prefix (`NATS_SUBJECT_PREFIX`): an event of type T goes out on `<prefix>.<T>`. */
  prefix: string;
  /** Rows claimed and published at a time. */
  batchSize?: number;
  /**
   * How long a claimed batch is this relay's alone. Short, so a batch whose relay died is published
   * by another within seconds (a reply later than the saga timeout fails its message).
   */
  leaseMs?: number;
  /** Polling interval when no NOTIFY arrives (the fallback for a lost notification). */
  pollIntervalMs?: number;
  /** Sent rows are deleted after this long. */
  retentionMs?: number;
  /**
   * While rows handed over by this process's commits keep coming, how long the "sent" marks of
   * those published wait for the next outboxTransaction on the pool to carry them before the relay
   * sends them itself (100 ms). A relay with nothing left to publish marks at once.
   */
  markDelayMs?: number;
  /**
   * Runs before a batch is published, outside any transaction, e.g. to make a cache current before
   * the events say it is. When it throws nothing is published and the batch is retried.
   */
  beforePublish?: (events: Envelope[]) => Promise<void>;
  /** Called with the number of events published and the age of the oldest, for metrics. */
  onPublished?: (count: number, oldestAgeMs: number) => void;
}

/** An outbox row as a relay claims it. */
export interface OutboxRow {
  id: string;
  type: string | null;
  subject: string | null;
  /** The event as JSON text, published as it is (parsed only for beforePublish). */
  payload: string;
  request_id: string | null;
  /** The trace of the span that wrote the row, or null. */
  traceparent: string | null;
  created_at: Date;
  /** Handed over by publishAfterCommit: no outbox row, so nothing to mark sent or release. */
  rowless?: boolean;
}

/**
 * Publishes outbox rows with msgID = event id and marks them sent only after the PubAck. A batch is
 * claimed for a short lease in a transaction of its own; the hook, the publish and the "sent" mark
 * follow with no transaction open and no row locked, so neither NATS nor the hook can hold Postgres.
 */
export class OutboxRelay {
  readonly #opts: Required<Omit<OutboxRelayOptions, "beforePublish" | "onPublished">> & {
    beforePublish?: OutboxRelayOptions["beforePublish"];
    onPublished?: OutboxRelayOptions["onPublished"];
  };
  #running = false;
  #loop?: Promise<void>;
  #wake?: () => void;
  /** Set by a NOTIFY or a wake-up from notifyOutbox: there are unclaimed rows to claim. */
  #claimRequested = false;
  /** Committed rows of this process's transactions, leased to this relay, to publish in order. */
  #handedOff: OutboxRow[] = [];
  /** Ids of handed-off rows published and not yet marked sent (see #deferMarks). */
  #toMark: string[] = [];
  #markTimer?: ReturnType<typeof setTimeout>;
  #unlisten?: () => Promise<void>;
  #lastCleanup = 0;
  /** False from a failed batch until one goes out again. */
  #healthy = true;
  readonly #wakeUp = () => {
    this.#claimRequested = true;
    this.#wake?.();
  };
  readonly #local: LocalRelay;

  constructor(options: OutboxRelayOptions) {
    if (!options.prefix) throw new Error("OutboxRelay needs the subject prefix");
    this.#opts = {
      batchSize: 100,
      leaseMs: 2_000,
      pollIntervalMs: 1_000,
      retentionMs: 60 * 60_000,
      markDelayMs: 100,
      ...options,
    };
    for (
      const name of [
        "batchSize",
        "leaseMs",
        "pollIntervalMs",
        "retentionMs",
        "markDelayMs",
      ] as const
    ) {
      const value = this.#opts[name];
      if (!Number.isInteger(value) || value <= 0) {
        throw new RangeError(`OutboxRelay ${name} must be a positive integer, got ${value}`);
      }
    }
    this.#local = {
      wake: this.#wakeUp,
      healthy: () => this.#healthy,
      leaseMs: this.#opts.leaseMs,
      take: (rows) => {
        if (!this.#running) return; // their lease runs out and any relay claims them
        this.#handedOff.push(...rows);
        this.#wake?.();
      },
      takeMarks: () => this.#toMark.splice(0),
      returnMarks: (ids) => this.#deferMarks(ids),
    };
  }

  /** Starts listening and relaying in the background. */
  async start(): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    const { sql } = this.#opts;
    // Transactions on the same pool hand their rows to this relay, or wake it directly.
    let local = localRelays.get(sql);
    if (!local) localRelays.set(sql, local = new Set<LocalRelay>());
    local.add(this.#local);
    try {
      const sub = await sql.listen(OUTBOX_CHANNEL, this.#wakeUp);
      this.#unlisten = () => sub.unlisten();
    } catch (err) {
      this.#opts.log.warn("outbox LISTEN failed; relying on polling", { err });
    }
    this.#loop = this.#run();
  }

  /**
   * Stops after the batch in flight; what is left stays in the outbox for the next start (rows
   * handed to it are released, so another relay need not wait out their lease).
   */
  async stop(): Promise<void> {
    if (!this.#running) return;
    this.#running = false;
    localRelays.get(this.#opts.sql)?.delete(this.#local);
    this.#wake?.();
    await this.#loop;
    await this.#unlisten?.().catch(() => {});
    const left = outboxIds(this.#handedOff.splice(0));
    if (left.length > 0) await this.#release(left).catch(() => {});
    await this.#flushMarks();
  }

  /**
   * Leaves the "sent" marks of published handed-off rows to the next outboxTransaction on the pool,
   * whose COMMIT carries them, or to a statement of their own when the relay runs out of rows or
   * none comes within markDelayMs. Until marked, the lease keeps other relays off the rows.
   */
  #deferMarks(ids: string[]): void {
    this.#toMark.push(...ids);
    this.#markTimer ??= setTimeout(() => {
      this.#markTimer = undefined;
      void this.#flushMarks();
    }, this.#opts.markDelayMs);
  }

  async #flushMarks(): Promise<void> {
    clearTimeout(this.#markTimer);
    this.#markTimer = undefined;
    const ids = this.#toMark.splice(0);
    if (ids.length === 0) return;
    try {
      await markSent(this.#opts.sql, ids);
    } catch (err) {
      // Tried again; should the lease run out first, the rows go out once more (deduplicated).
      this.#opts.log.warn("outbox sent mark failed; will retry", { err });
      if (this.#running) this.#deferMarks(ids);
    }
  }

  async #run(): Promise<void> {
    const { batchSize } = this.#opts;
    let failures = 0;
    // The first pass claims what an earlier run or a dead instance left.
    let claimDue = true;
    while (this.#running) {
      claimDue ||= this.#claimRequested;
      this.#claimRequested = false;
      try {
        if (this.#handedOff.length > 0) {
          await this.#publishBatch(this.#handedOff.splice(0, batchSize), true);
          // Idle again: marked now, as a claimed batch is. Only while more rows wait do the marks
          // wait for a transaction to carry them.
          if (this.#handedOff.length === 0) await this.#flushMarks();
        }
        // Claimed too while rows keep being handed over, so other instances' rows are not starved.
        if (claimDue) {
          claimDue = false;
          if (await this.relayOnce() >= batchSize) claimDue = true;
        }
        failures = 0;
        this.#healthy = true;
        await this.#cleanup();
      } catch (err) {
        failures++;
        this.#healthy = false;
        claimDue = true;
        // The rows handed over are released too: from now on the claims publish them, in order.
        // Rowless events are dropped: their callers republish them.
        const left = outboxIds(this.#handedOff.splice(0));
        if (left.length > 0) await this.#release(left).catch(() => {});
        this.#opts.log.warn("outbox relay failed; will retry", { err, failures });
      }
      if (
        failures === 0 && (claimDue || this.#claimRequested || this.#handedOff.length > 0)
      ) continue;
      // A failed publish (a NATS node down, a stream leader being elected) is tried again soon:
      // replies later than SAGA_TIMEOUT_MS fail their messages, and a repeat is deduplicated.
      const delay = failures > 0
        ? Math.min(250 * 2 ** (failures - 1), 1_000)
        : this.#opts.pollIntervalMs;
      const timedOut = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(true), delay);
        const woken = () => {
          clearTimeout(timer);
          resolve(false);
        };
        this.#wake = failures > 0 && this.#running ? undefined : woken;
        if (!this.#running) woken();
      });
      this.#wake = undefined;
      if (timedOut) claimDue = true;
    }
  }

  /**
   * Claims a batch of unsent rows (unclaimed, or whose lease ran out) in outbox order for `leaseMs`,
   * in a statement of its own; the rows are then this relay's while the lease runs. relayOnce's
   * first step, public so tests can play a relay that dies between its claim and its publish.
   */
  async claimBatch(): Promise<OutboxRow[]> {
    const { sql, batchSize, leaseMs } = this.#opts;
    // SKIP LOCKED: relays claiming at the same moment each take other rows instead of waiting.
    return await sql<OutboxRow[]>`
      with picked as (
        select id from outbox
        where sent_at is null and (claimed_until is null or claimed_until < clock_timestamp())
        order by created_at
        limit ${batchSize}
        for update skip locked
      ), claimed as (
        update outbox o
        set claimed_until = clock_timestamp() + make_interval(secs => ${leaseMs / 1000})
        from picked
        where o.id = picked.id
        returning o.id, o.type, o.subject, o.payload::text as payload, o.request_id,
                  o.traceparent, o.created_at
      )
      select * from claimed order by created_at`;
  }

  /**
   * Publishes one batch: claim (a short transaction, committed), beforePublish and the publish with
   * no transaction open, then the "sent" mark in a statement of its own. Returns how many it published.
   *
   * A publish that outlasts its lease may be published a second time by another relay, as may a
   * batch whose PubAcks arrived but whose mark was lost; JetStream's msgID deduplication and the
   * idempotent consumers absorb the repeat.
   */
  async relayOnce(): Promise<number> {
    const rows = await this.claimBatch();
    if (rows.length === 0) return 0;
    await this.#publishBatch(rows);
    return rows.length;
  }

  /**
   * Publishes rows leased to this relay (claimed, or handed over by a commit of this process), then
   * marks them sent, or leaves the mark to #deferMarks; on failure releases them and throws.
   */
  async #publishBatch(rows: OutboxRow[], deferMark = false): Promise<void> {
    const { sql, js, prefix } = this.#opts;
    const ids = outboxIds(rows);
    try {
      const { beforePublish } = this.#opts;
      if (beforePublish) {
        const started = spanClock();
        await beforePublish(rows.map((r) => JSON.parse(r.payload)));
        // In each row's trace: what happened between its commit and its publish.
        const ended = spanClock();
        for (const row of rows) {
          recordSpan("before publish", row.traceparent, started, ended, {
            "batch.size": rows.length,
          });
        }
      }
      // Rows written before the outbox stored types carry their subject.
      await publishEvents(
        js,
        rows.map((row) => ({
          id: row.id,
          type: row.type ?? (JSON.parse(row.payload) as Envelope).type,
          subject: row.type ? subjectFor(prefix, row.type as EventType) : row.subject!,
          payload: row.payload,
          requestId: row.request_id,
          traceparent: row.traceparent,
        })),
      );
    } catch (err) {
      // Released at once, so the retry after the backoff need not wait out the lease; should the
      // release fail too, the lease runs out by itself.
      if (ids.length > 0) await this.#release(ids).catch(() => {});
      throw err;
    }
    // Rowless events (publishAfterCommit) have nothing to mark.
    if (ids.length > 0) {
      if (deferMark) this.#deferMarks(ids);
      else await markSent(sql, ids);
    }
    const oldest = Date.now() - rows[0]!.created_at.getTime();
    this.#opts.onPublished?.(rows.length, oldest);
    this.#opts.log.debug("outbox published", { count: rows.length });
  }

  /** Ends the lease of these unsent rows, so any relay may claim them at once. */
  async #release(ids: string[]): Promise<void> {
    await this.#opts.sql`
      update outbox set claimed_until = null
      where id = any(${ids}::uuid[]) and sent_at is null`;
  }

  async #cleanup(): Promise<void> {
    const now = Date.now();
    if (now - this.#lastCleanup < 60_000) return;
    this.#lastCleanup = now;
    const cutoff = new Date(now - this.#opts.retentionMs);
    await this.#opts.sql`delete from outbox where sent_at is not null and sent_at < ${cutoff}`;
  }
}

/** The ids of the rows that are in the outbox (not handed over by publishAfterCommit). */
function outboxIds(rows: OutboxRow[]): string[] {
  const ids: string[] = [];
  for (const r of rows) if (!r.rowless) ids.push(r.id);
  return ids;
}

/** An event ready to publish: its id (the msgID), type, subject, JSON text, request and trace. */
export interface EventToPublish {
  id: string;
  type: string;
  subject: string;
  payload: string;
  requestId?: string | null;
  /** The trace of the span that produced the event, or null: the publish continues it. */
  traceparent?: string | null;
}

/**
 * Publishes `events` with msgID = event id (JetStream drops a repeat within its deduplication
 * window), the event type and request id headers, and a producer span continuing each event's trace
 * (tracing on); resolves once every PubAck came, rejects when one publish failed. Issued in order on
 * one connection, so the stream keeps that order; the PubAcks are awaited together.
 */
export async function publishEvents(js: JetStreamClient, events: EventToPublish[]): Promise<void> {
  await Promise.all(events.map(async (event) => {
    const h = natsHeaders();
    h.set(HEADERS.eventType, event.type);
    if (event.requestId) h.set(HEADERS.requestId, event.requestId);
    // The consumer continues the producer span's trace.
    const span = event.traceparent
      ? startSpan(`publish ${event.type}`, { kind: "producer", parent: event.traceparent })
      : undefined;
    if (span?.traceparent) h.set(TRACEPARENT, span.traceparent);
    try {
      await js.publish(event.subject, event.payload, {
        msgID: event.id,
        headers: h,
        timeout: 2_000,
      });
      span?.end();
    } catch (err) {
      span?.end(err);
      throw err;
    }
  }));
}

/** The number of unsent rows and the age of the oldest, in milliseconds. */
export async function outboxBacklog(sql: Sql): Promise<{ count: number; oldestAgeMs: number }> {
  const [row] = await sql<{ count: number; oldest: Date | null }[]>`
    select count(*)::int as count, min(created_at) as oldest from outbox where sent_at is null`;
  return {
    count: row?.count ?? 0,
    oldestAgeMs: row?.oldest ? Math.max(0, Date.now() - row.oldest.getTime()) : 0,
  };
}
