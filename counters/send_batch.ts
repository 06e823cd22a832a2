/**
 * Counting sent messages, alone or in batches: for each send one ledger row keyed by its
 * transaction, the recipient's counter and version, and the reply in the outbox, in one transaction
 * of three round trips after BEGIN. A transaction already in the ledger changes nothing and re-sends
 * its reply (a send cancelled first gets a "failed" one). A refusal by the database (a constraint)
 * rolls the transaction back; a lone send then records the refusal (a ledger row that changes
 * nothing and a "failed" reply), a batch is applied one send at a time so only the refused one
 * fails. Other errors propagate so the events are redelivered.
 */
import { isPermanentDbError, type Sql } from "../shared/db.ts";
import type { Envelope, EventData } from "../shared/events.ts";
import { enqueueEvents, outboxTransaction } from "../shared/outbox.ts";
import {
  countedReply,
  describeRefusal,
  type IncrementResult,
  type LedgerRow,
  USER_LOCK_NAMESPACE,
} from "./counter_store.ts";

/** One "message sent" to count. */
export interface SendToCount {
  data: EventData<"dialogs.message.sent">;
  requestId?: string;
}

/** Counts one sent message for its recipient (see the module doc). */
export async function applyMessageSent(
  sql: Sql,
  data: EventData<"dialogs.message.sent">,
  requestId?: string,
): Promise<IncrementResult> {
  return (await applyMessagesSent(sql, [{ data, requestId }]))[0]!;
}

/** Counts `sends`; one result per send, in order. */
export async function applyMessagesSent(
  sql: Sql,
  sends: SendToCount[],
): Promise<IncrementResult[]> {
  try {
    return await recordSends(sql, sends, { outcome: "counted" });
  } catch (err) {
    if (!isPermanentDbError(err)) throw err;
    if (sends.length === 1) {
      return await recordSends(sql, sends, {
        outcome: "failed",
        reason: describeRefusal(err),
      });
    }
    const results: IncrementResult[] = [];
    for (const s of sends) results.push(...await applyMessagesSent(sql, [s]));
    return results;
  }
}

/** Records `sends` with `outcome`: counted (the counters go up) or failed (nothing changes). */
async function recordSends(
  sql: Sql,
  sends: SendToCount[],
  result: { outcome: "counted" | "failed"; reason?: string },
): Promise<IncrementResult[]> {
  return await outboxTransaction(sql, async (tx, withCommit) => {
    const replyIds = sends.map(() => crypto.randomUUID());
    // Sorted, so two batches sharing users take their locks in the same order and never deadlock.
    const recipients = [...new Set(sends.map((s) => s.data.recipientId))].sort();
    const [, inserted] = await Promise.all([
      tx`select pg_advisory_xact_lock(${USER_LOCK_NAMESPACE}, hashtext(u))
         from unnest(${recipients}::text[]) as u`,
      tx<{ transaction_id: string }[]>`
        insert into ledger (transaction_id, kind, user_id, peer_id, message_id, outcome, delta,
                            reason, reply_event_id)
        select t, 'send', u, p, m, ${result.outcome}, ${result.outcome === "counted" ? 1 : 0},
               ${result.reason ?? null}, r
        from unnest(${sends.map((s) => s.data.transactionId)}::uuid[],
                    ${sends.map((s) => s.data.recipientId)}::uuid[],
                    ${sends.map((s) => s.data.senderId)}::uuid[],
                    ${sends.map((s) => s.data.messageId)}::uuid[],
                    ${replyIds}::uuid[]) as x(t, u, p, m, r)
        on conflict (transaction_id) do nothing
        returning transaction_id`,
    ]);
    // A transaction the ledger already had, or one given twice in this batch, is a redelivery.
    const fresh = new Set(inserted.map((r) => r.transaction_id));
    const isNew = sends.map((s) => fresh.delete(s.data.transactionId.toLowerCase()));

    const unread = new Map<string, { user: string; peer: string; n: number }>();
    for (const [i, s] of sends.entries()) {
      if (!isNew[i] || result.outcome !== "counted") continue;
      const key = `${s.data.recipientId}|${s.data.senderId}`;
      const pair = unread.get(key) ?? { user: s.data.recipientId, peer: s.data.senderId, n: 0 };
      pair.n++;
      unread.set(key, pair);
    }
    const pairs = [...unread.values()];
    const changedUsers = [...new Set(pairs.map((p) => p.user))];
    const repeated = sends.filter((_, i) => !isNew[i]).map((s) => s.data.transactionId);
    const [, , ledgerRows] = await Promise.all([
      pairs.length > 0
        ? tx`
          insert into unread_counters (user_id, peer_id, unread)
          select * from unnest(${pairs.map((p) => p.user)}::uuid[],
                               ${pairs.map((p) => p.peer)}::uuid[], ${pairs.map((p) => p.n)}::int[])
          on conflict (user_id, peer_id)
          do update set unread = unread_counters.unread + excluded.unread, updated_at = now()`
        : undefined,
      changedUsers.length > 0
        ? tx`
          insert into counter_versions (user_id, version)
          select u, 1 from unnest(${changedUsers}::uuid[]) as u
          on conflict (user_id) do update set version = counter_versions.version + 1`
        : undefined,
      repeated.length > 0
        ? tx<(LedgerRow & { transaction_id: string })[]>`
          select transaction_id, message_id, outcome, reason, reply_event_id, delta from ledger
          where transaction_id = any(${repeated}::uuid[])`
        : [],
    ]);

    const known = new Map(ledgerRows.map((r) => [r.transaction_id, r]));
    const replies: Envelope[] = [];
    const results = sends.map((s, i): IncrementResult => {
      if (isNew[i]) {
        replies.push(countedReply(s.data, result, replyIds[i]!, s.requestId));
        return { applied: true, outcome: result.outcome, reason: result.reason };
      }
      const row = known.get(s.data.transactionId.toLowerCase())!;
      const outcome = row.outcome === "counted" ? "counted" : "failed";
      const reason = row.reason ?? undefined;
      if (!row.reply_event_id) {
        // A cancel arrived first and wrote no reply; remember this one so a repeat re-sends the same.
        row.reply_event_id = replyIds[i]!;
        withCommit(tx`update ledger set reply_event_id = ${row.reply_event_id}
                      where transaction_id = ${row.transaction_id}`);
      }
      replies.push(countedReply(s.data, { outcome, reason }, row.reply_event_id, s.requestId));
      return { applied: false, outcome, reason };
    });
    withCommit(enqueueEvents(tx, replies));
    return results;
  });
}
