/** Postgres access for counters: the ledger-guarded increment and reading a user's counters. */
import type { Sql } from "../shared/db.ts";
import { isPermanentDbError } from "../shared/db.ts";
import { createEvent, type EventData } from "../shared/events.ts";
import { enqueueEvent } from "../shared/outbox.ts";
import type { UserCounters } from "./counters.ts";

/** What applying a "message sent" did. */
export interface IncrementResult {
  /** False when the ledger already had this transaction (a redelivery). */
  applied: boolean;
  outcome: "counted" | "failed";
  reason?: string;
}

/**
 * Counts a sent message for its recipient in one transaction: ledger row, counter, version and the
 * reply in the outbox. A transaction already in the ledger changes nothing and re-sends its reply.
 * A refusal by the database (a constraint) becomes a "failed" reply; other errors propagate.
 */
export async function applyMessageSent(
  sql: Sql,
  prefix: string,
  data: EventData<"dialogs.message.sent">,
  requestId?: string,
): Promise<IncrementResult> {
  return await sql.begin(async (tx) => {
    const replyId = crypto.randomUUID();
    const inserted = await tx`
      insert into ledger (transaction_id, message_id, user_id, peer_id, outcome, reply_event_id)
      values (${data.transactionId}, ${data.messageId}, ${data.recipientId}, ${data.senderId},
              'counted', ${replyId})
      on conflict (transaction_id) do nothing
      returning transaction_id`;
    if (inserted.length === 0) {
      const [row] = await tx<
        {
          message_id: string;
          outcome: "counted" | "failed";
          reason: string | null;
          reply_event_id: string;
        }[]
      >`select message_id, outcome, reason, reply_event_id from ledger
        where transaction_id = ${data.transactionId}`;
      const reply = createEvent("counters.message.counted", {
        transactionId: data.transactionId,
        messageId: row!.message_id,
        outcome: row!.outcome,
        ...(row!.reason ? { reason: row!.reason } : {}),
      }, { id: row!.reply_event_id, requestId });
      await enqueueEvent(tx, prefix, reply);
      return { applied: false, outcome: row!.outcome, reason: row!.reason ?? undefined };
    }

    let outcome: "counted" | "failed" = "counted";
    let reason: string | undefined;
    try {
      // A savepoint, so a refused update leaves the ledger row and the reply to record the refusal.
      await tx.savepoint(async (sp) => {
        await sp`
          insert into unread_counters (user_id, peer_id, unread)
          values (${data.recipientId}, ${data.senderId}, 1)
          on conflict (user_id, peer_id)
          do update set unread = unread_counters.unread + 1, updated_at = now()`;
        await sp`
          insert into counter_versions (user_id, version) values (${data.recipientId}, 1)
          on conflict (user_id) do update set version = counter_versions.version + 1`;
      });
    } catch (err) {
      if (!isPermanentDbError(err)) throw err;
      outcome = "failed";
      reason = describeRefusal(err);
      await tx`update ledger set outcome = 'failed', reason = ${reason}, updated_at = now()
               where transaction_id = ${data.transactionId}`;
    }
    const reply = createEvent("counters.message.counted", {
      transactionId: data.transactionId,
      messageId: data.messageId,
      outcome,
      ...(reason ? { reason } : {}),
    }, { id: replyId, requestId });
    await enqueueEvent(tx, prefix, reply);
    return { applied: true, outcome, reason };
  });
}

/** A one-line reason naming the constraint, without SQL or values. */
function describeRefusal(err: unknown): string {
  const e = err as { constraint_name?: string; code?: string };
  const what = e.constraint_name ? `constraint ${e.constraint_name}` : `error ${e.code}`;
  return `the counters database refused the update (${what})`;
}

/** A user's counters and version, read in one statement so both come from one snapshot. */
export async function loadUserCounters(sql: Sql, userId: string): Promise<UserCounters> {
  const [row] = await sql<{ version: string; dialogs: Record<string, number> }[]>`
    select
      coalesce((select version from counter_versions where user_id = ${userId}), 0) as version,
      coalesce((select json_object_agg(peer_id, unread) from unread_counters
                where user_id = ${userId} and unread > 0), '{}'::json) as dialogs`;
  return { version: Number(row!.version), dialogs: row!.dialogs };
}
