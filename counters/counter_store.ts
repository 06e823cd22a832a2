/** Postgres access for counters: ledger-guarded changes to the counters and reading a user's counters. */
import type { Sql, Tx } from "../shared/db.ts";
import { pipelinedTransaction } from "../shared/db.ts";
import { createEvent, type EventData } from "../shared/events.ts";
import type { UserCounters } from "./counters.ts";

/** What applying a "message sent" did. */
export interface IncrementResult {
  /** False when the ledger already had this transaction (a redelivery or a send after its cancel). */
  applied: boolean;
  outcome: "counted" | "failed";
  reason?: string;
}

type Outcome = "counted" | "failed" | "cancelled" | "read";

/** A ledger row as the saga handlers read it. */
export interface LedgerRow {
  message_id: string | null;
  outcome: Outcome;
  reason: string | null;
  reply_event_id: string | null;
  delta: number;
}

/** Namespace of the per-user advisory locks (the second key is the user id's hash). */
export const USER_LOCK_NAMESPACE = 7_206_118;

/**
 * Serialises every change of one user's counters: saga handlers and the reconciler take this lock
 * first, so the reconciler never sees a ledger row without its counter change or the reverse.
 * Like every postgres.js statement, it is sent when first awaited, so it can travel with the next.
 */
export function lockUser(tx: Tx | Sql, userId: string): PromiseLike<unknown> {
  return tx`select pg_advisory_xact_lock(${USER_LOCK_NAMESPACE}, hashtext(${userId}))`;
}

/**
 * Adds `delta` to one counter (never below zero) and bumps the user's version; both statements are
 * sent at once, in one round trip.
 */
export function addToCounter(
  tx: Tx | Sql,
  userId: string,
  peerId: string,
  delta: number,
): Promise<unknown> {
  return Promise.all([
    tx`
      insert into unread_counters (user_id, peer_id, unread)
      values (${userId}, ${peerId}, ${Math.max(0, delta)})
      on conflict (user_id, peer_id)
      do update set unread = greatest(0, unread_counters.unread + ${delta}), updated_at = now()`,
    bumpVersion(tx, userId),
  ]);
}

/** Increments the user's counter version (the cache and the live stream order changes by it). */
export function bumpVersion(tx: Tx | Sql, userId: string): PromiseLike<unknown> {
  return tx`
    insert into counter_versions (user_id, version) values (${userId}, 1)
    on conflict (user_id) do update set version = counter_versions.version + 1`;
}

/** The reply to a "message sent": its outcome, under the id the ledger remembers for it. */
export function countedReply(
  data: EventData<"dialogs.message.sent">,
  result: { outcome: "counted" | "failed"; reason?: string },
  replyId: string,
  requestId?: string,
) {
  return createEvent("counters.message.counted", {
    transactionId: data.transactionId,
    messageId: data.messageId,
    outcome: result.outcome,
    ...(result.reason ? { reason: result.reason } : {}),
  }, { id: replyId, requestId });
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
  return await pipelinedTransaction(sql, async (tx, withCommit) => {
    const reason = `cancelled: ${data.reason}`;
    const [, inserted] = await Promise.all([
      lockUser(tx, data.recipientId),
      tx`
        insert into ledger (transaction_id, kind, user_id, peer_id, message_id, outcome, delta,
                            reason)
        values (${data.transactionId}, 'send', ${data.recipientId}, ${data.senderId},
                ${data.messageId}, 'cancelled', 0, ${reason})
        on conflict (transaction_id) do nothing
        returning transaction_id`,
    ]);
    if (inserted.length > 0) return "remembered";
    const [row] = await tx<LedgerRow[]>`
      select message_id, outcome, reason, reply_event_id, delta from ledger
      where transaction_id = ${data.transactionId} for update`;
    if (row!.outcome !== "counted") return "nothing";
    withCommit(
      tx`update ledger set outcome = 'cancelled', delta = 0, reason = ${reason}, updated_at = now()
         where transaction_id = ${data.transactionId}`,
    );
    withCommit(addToCounter(tx, data.recipientId, data.senderId, -1));
    return "undone";
  });
}

/** Applies a read once: the reader's counter for the peer goes down by the number read. */
export async function applyMessagesRead(
  sql: Sql,
  data: EventData<"dialogs.messages.read">,
): Promise<boolean> {
  return await pipelinedTransaction(sql, async (tx, withCommit) => {
    const [, inserted] = await Promise.all([
      lockUser(tx, data.readerId),
      tx`
        insert into ledger (transaction_id, kind, user_id, peer_id, outcome, delta)
        values (${data.transactionId}, 'read', ${data.readerId}, ${data.peerId}, 'read',
                ${-data.count})
        on conflict (transaction_id) do nothing
        returning transaction_id`,
    ]);
    if (inserted.length === 0) return false;
    withCommit(addToCounter(tx, data.readerId, data.peerId, -data.count));
    return true;
  });
}

/** A one-line reason naming the constraint, without SQL or values. */
export function describeRefusal(err: unknown): string {
  const e = err as { constraint_name?: string; code?: string };
  const what = e.constraint_name ? `constraint ${e.constraint_name}` : `error ${e.code}`;
  return `the counters database refused the update (${what})`;
}

/** A user's counters and version, read in one statement so both come from one snapshot. */
export async function loadUserCounters(sql: Sql, userId: string): Promise<UserCounters> {
  return (await loadManyUserCounters(sql, [userId]))[0]!;
}

/** loadUserCounters for several users in one statement; in the order of `userIds`. */
export async function loadManyUserCounters(sql: Sql, userIds: string[]): Promise<UserCounters[]> {
  const rows = await sql<{ version: string; dialogs: Record<string, number> }[]>`
    select
      coalesce((select version from counter_versions v where v.user_id = u), 0) as version,
      coalesce((select json_object_agg(peer_id, unread) from unread_counters c
                where c.user_id = u and unread > 0), '{}'::json) as dialogs
    from unnest(${userIds}::uuid[]) with ordinality as x(u, n)
    order by n`;
  return rows.map((row) => ({ version: Number(row.version), dialogs: row.dialogs }));
}
