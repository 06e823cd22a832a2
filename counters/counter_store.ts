/**
 * Postgres access for counters: the saga's ledger (load an entry, let saga.ts decide, write what it
 * says), the counters it changes, and reading a user's counters.
 */
import { pipelinedTransaction, type Sql, type Tx } from "../shared/db.ts";
import { createEvent, type EventData } from "../shared/events.ts";
import { enqueueEvents, notifyOutbox } from "../shared/outbox.ts";
import type { GroupCounters, Membership, UserCounters } from "./counters.ts";
import {
  type CountedReply,
  decide,
  type LedgerDecision,
  type LedgerEntry,
  type LedgerEvent,
} from "./saga.ts";

/** An event for the ledger: its saga transaction, whose counter it concerns, and what happened. */
export interface LedgerChange {
  transactionId: string;
  userId: string;
  peerId: string;
  messageId?: string;
  requestId?: string;
  event: LedgerEvent;
}

/**
 * Applies `changes` in one transaction of two round trips: BEGIN with the users' locks and the
 * transactions' ledger entries; then what decide() says for each, in order (entries, counters,
 * versions, replies), with the COMMIT. A transaction given twice meets its own new entry the second
 * time. Changes of one counter add up before the clamp at zero, so batch only changes that agree in
 * sign (sends); cancels and reads go one at a time.
 */
export async function applyToLedger(
  sql: Sql,
  changes: LedgerChange[],
): Promise<LedgerDecision[]> {
  const decisions = await pipelinedTransaction(sql, async (tx, withCommit) => {
    const [, entries] = await Promise.all([
      lockUsers(tx, changes.map((c) => c.userId)),
      loadLedgerEntries(tx, changes.map((c) => c.transactionId)),
    ]);
    const written = new Map<string, { change: LedgerChange; entry: LedgerEntry }>();
    const decisions = changes.map((change) => {
      const key = change.transactionId.toLowerCase();
      const decision = decide(entries.get(key), change.event);
      if (decision.entry) {
        entries.set(key, decision.entry);
        written.set(key, { change, entry: decision.entry });
      }
      return decision;
    });
    const counts = decisions.flatMap((d, i) =>
      d.delta === 0
        ? []
        : [{ userId: changes[i]!.userId, peerId: changes[i]!.peerId, delta: d.delta }]
    );
    const replies = decisions.flatMap((d, i) =>
      d.reply ? [countedReply(changes[i]!, d.reply)] : []
    );
    withCommit(writeLedgerEntries(tx, [...written.values()]));
    withCommit(addToCounters(tx, counts));
    withCommit(bumpVersions(tx, counts.map((c) => c.userId)));
    withCommit(enqueueEvents(tx, replies));
    return decisions;
  });
  if (decisions.some((d) => d.reply)) notifyOutbox(sql);
  return decisions;
}

/** Namespace of the per-user advisory locks (the second key is the user id's hash). */
const USER_LOCK_NAMESPACE = 7_206_118;

/**
 * Serialises every change of these users' counters: the saga and the reconciler take this lock
 * before they load, so each decides on the ledger and counters as they are, and the reconciler
 * never sees a ledger entry without its counter change or the reverse. Taken in sorted order, so
 * two batches sharing users never deadlock. Sent at once, not when awaited: the statements made
 * after it travel with it and run under it.
 */
export function lockUsers(tx: Tx, userIds: string[]): PromiseLike<unknown> {
  const users = [...new Set(userIds.map((u) => u.toLowerCase()))].sort();
  return tx`select pg_advisory_xact_lock(${USER_LOCK_NAMESPACE}, hashtext(u))
            from unnest(${users}::text[]) as u`.execute();
}

/** The ledger entries of these transactions, by lower-case transaction id. */
async function loadLedgerEntries(tx: Tx, transactionIds: string[]) {
  const rows = await tx<(LedgerEntry & { transaction_id: string })[]>`
    select transaction_id, outcome, delta, reason, reply_event_id as "replyId" from ledger
    where transaction_id = any(${transactionIds}::uuid[])`;
  return new Map(rows.map(({ transaction_id, ...entry }) => [transaction_id, entry]));
}

/** Inserts new ledger entries and updates changed ones, in one statement. */
function writeLedgerEntries(
  tx: Tx,
  written: { change: LedgerChange; entry: LedgerEntry }[],
): PromiseLike<unknown> {
  if (written.length === 0) return Promise.resolve();
  const column = <T>(f: (w: { change: LedgerChange; entry: LedgerEntry }) => T) => written.map(f);
  return tx`
    insert into ledger (transaction_id, kind, user_id, peer_id, message_id, outcome, delta, reason,
                        reply_event_id)
    select t, case when o = 'read' then 'read' else 'send' end, u, p, m, o, d, r, y
    from unnest(${column((w) => w.change.transactionId)}::uuid[],
                ${column((w) => w.change.userId)}::uuid[], ${
    column((w) => w.change.peerId)
  }::uuid[],
                ${column((w) => w.change.messageId ?? null)}::uuid[],
                ${column((w) => w.entry.outcome)}::text[], ${column((w) => w.entry.delta)}::int[],
                ${column((w) => w.entry.reason)}::text[], ${column((w) => w.entry.replyId)}::uuid[])
      as x(t, u, p, m, o, d, r, y)
    on conflict (transaction_id) do update
    set outcome = excluded.outcome, delta = excluded.delta, reason = excluded.reason,
        reply_event_id = excluded.reply_event_id, updated_at = now()`;
}

/**
 * Adds each delta to its counter, never below zero, in one statement; deltas for one counter add
 * up first.
 */
export function addToCounters(
  tx: Tx,
  changes: { userId: string; peerId: string; delta: number }[],
): PromiseLike<unknown> {
  const byPair = new Map<string, { user: string; peer: string; delta: number }>();
  for (const c of changes) {
    const [user, peer] = [c.userId.toLowerCase(), c.peerId.toLowerCase()];
    const pair = byPair.get(`${user}|${peer}`) ?? { user, peer, delta: 0 };
    pair.delta += c.delta;
    byPair.set(`${user}|${peer}`, pair);
  }
  const pairs = [...byPair.values()];
  if (pairs.length === 0) return Promise.resolve();
  // A new row starts at the delta (clamped); an existing one takes its own delta from `change`.
  return tx`
    with change as (
      select * from unnest(${pairs.map((p) => p.user)}::uuid[], ${pairs.map((p) => p.peer)}::uuid[],
                           ${pairs.map((p) => p.delta)}::int[]) as c(user_id, peer_id, delta)
    )
    insert into unread_counters as t (user_id, peer_id, unread)
    select user_id, peer_id, greatest(0, delta) from change
    on conflict (user_id, peer_id) do update
    set unread = greatest(0, t.unread + (select delta from change c
                                         where c.user_id = excluded.user_id
                                           and c.peer_id = excluded.peer_id)),
        updated_at = now()`;
}

/** Increments each user's counter version (the caches and live streams order changes by it). */
export function bumpVersions(tx: Tx, userIds: string[]): PromiseLike<unknown> {
  const users = [...new Set(userIds.map((u) => u.toLowerCase()))];
  if (users.length === 0) return Promise.resolve();
  return tx`
    insert into counter_versions (user_id, version)
    select u, 1 from unnest(${users}::uuid[]) as u
    on conflict (user_id) do update set version = counter_versions.version + 1`;
}

/** The reply to a "message sent": its outcome, under the id the ledger remembers for it. */
function countedReply(change: LedgerChange, reply: CountedReply) {
  return createEvent("counters.message.counted", {
    transactionId: change.transactionId,
    messageId: change.messageId!,
    outcome: reply.outcome,
    ...(reply.reason ? { reason: reply.reason } : {}),
  }, { id: reply.replyId, requestId: change.requestId });
}

/** What applying a cancel did: `undone` when it took back an increment. */
export type CancelResult = "undone" | "remembered" | "nothing";

/**
 * Undoes a timed-out send: a counted increment is taken back; a send not seen yet is remembered as
 * cancelled so its late "message sent" changes nothing; a failed or cancelled one stays as it is.
 */
export async function applyMessageCancelled(
  sql: Sql,
  data: EventData<"dialogs.message.cancelled">,
): Promise<CancelResult> {
  const [decision] = await applyToLedger(sql, [{
    transactionId: data.transactionId,
    userId: data.recipientId,
    peerId: data.senderId,
    messageId: data.messageId,
    event: { type: "cancelled", reason: data.reason },
  }]);
  const step = decision!.step;
  return step === "undo the count"
    ? "undone"
    : step === "remember the cancel"
    ? "remembered"
    : "nothing";
}

/** Applies a read once: the reader's counter for the peer goes down by the number read. */
export async function applyMessagesRead(
  sql: Sql,
  data: EventData<"dialogs.messages.read">,
): Promise<boolean> {
  const [decision] = await applyToLedger(sql, [{
    transactionId: data.transactionId,
    userId: data.readerId,
    peerId: data.peerId,
    event: { type: "read", count: data.count },
  }]);
  return decision!.step === "read";
}

/** A user's counters and version, read in one statement so both come from one snapshot. */
export async function loadUserCounters(sql: Sql, userId: string): Promise<UserCounters> {
  return (await loadManyUserCounters(sql, [userId]))[0]!;
}

/**
 * loadUserCounters for several users in one statement; in the order of `userIds`. Each user's
 * state: dialog counts, muted dialogs, and per group the user is a member of its positions with
 * the user's own messages and the messages naming the user, not deleted, after the position.
 * `muted` and `groups` are left out when empty.
 */
export async function loadManyUserCounters(sql: Sql, userIds: string[]): Promise<UserCounters[]> {
  const rows = await sql<{
    version: string;
    dialogs: Record<string, number>;
    muted: string[];
    groups: Record<string, Membership>;
  }[]>`
    select
      coalesce((select version from counter_versions v where v.user_id = u), 0) as version,
      coalesce((select json_object_agg(peer_id, unread) from unread_counters c
                where c.user_id = u and unread > 0), '{}'::json) as dialogs,
      coalesce((select json_agg(peer_id order by peer_id) from dialog_mutes d
                where d.user_id = u and d.muted), '[]'::json) as muted,
      coalesce((select json_object_agg(m.group_id, json_build_object(
                  'joinedSeq', m.joined_seq, 'readSeq', m.read_seq, 'muted', m.muted,
                  'own', coalesce((select json_agg(g.seq order by g.seq) from group_messages g
                                   where g.group_id = m.group_id and g.sender_id = u
                                     and g.seq > greatest(m.joined_seq, m.read_seq)
                                     and not g.deleted), '[]'::json),
                  'mentions', coalesce((select json_agg(x.seq order by x.seq)
                                        from group_mentions x
                                        join group_messages g
                                          on g.group_id = x.group_id and g.seq = x.seq
                                        where x.user_id = u and x.group_id = m.group_id
                                          and x.seq > greatest(m.joined_seq, m.read_seq)
                                          and not g.deleted), '[]'::json)))
                from group_members m where m.user_id = u and m.member), '{}'::json) as groups
    from unnest(${userIds}::uuid[]) with ordinality as x(u, n)
    order by n`;
  return rows.map((row) => ({
    version: Number(row.version),
    dialogs: row.dialogs,
    ...(row.muted.length > 0 ? { muted: row.muted } : {}),
    ...(Object.keys(row.groups).length > 0 ? { groups: row.groups } : {}),
  }));
}

/**
 * The states of these groups in one statement, in the order of `groupIds`: version, newest seq,
 * the seqs that count for no one (deleted or cancelled) and those mentioning `all`. A group
 * counters never counted a message of is `{version 0, lastSeq 0, [], []}`.
 */
export async function loadManyGroupCounters(
  sql: Sql,
  groupIds: string[],
): Promise<GroupCounters[]> {
  const rows = await sql<
    { version: string; last_seq: string; deleted: number[]; mentions_all: number[] }[]
  >`
    select
      coalesce(c.version, 0) as version,
      coalesce(c.last_seq, 0) as last_seq,
      coalesce((select json_agg(g.seq order by g.seq) from group_messages g
                where g.group_id = x.g and g.deleted), '[]'::json) as deleted,
      coalesce((select json_agg(g.seq order by g.seq) from group_messages g
                where g.group_id = x.g and g.mentions_all and not g.deleted), '[]'::json)
        as mentions_all
    from unnest(${groupIds}::uuid[]) with ordinality as x(g, n)
    left join group_counters c on c.group_id = x.g
    order by n`;
  return rows.map((row) => ({
    version: Number(row.version),
    lastSeq: Number(row.last_seq),
    deleted: row.deleted,
    mentionsAll: row.mentions_all,
  }));
}
