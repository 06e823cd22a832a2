/** The counters side of the saga: applies dialogs' events, then refreshes the cache and the live stream. */
import { type EventHandler, PermanentEventError } from "../shared/consumer.ts";
import type { Sql } from "../shared/db.ts";
import type { Envelope } from "../shared/events.ts";
import type { Counter } from "../shared/metrics.ts";
import { groupCommit } from "../shared/group_commit.ts";
import { applyMessageCancelled, applyMessagesRead } from "./counter_store.ts";
import { applyMessagesSent, type SendToCount } from "./send_batch.ts";

/** Dependencies of the handler. */
export interface CounterEventsDeps {
  sql: Sql;
  /** Counts applied events by type and outcome. */
  applied: Counter;
  /** Runs after a change of these users' counters has committed. */
  afterChange: (userIds: string[]) => Promise<void>;
}

/** Handles one event from dialogs; unknown types can never be processed and are dead-lettered. */
export function createCounterEventHandler(deps: CounterEventsDeps): EventHandler {
  const { sql, applied, afterChange } = deps;
  // Sends arriving while a batch is being counted are counted together in the next transaction.
  const countSend = groupCommit((sends: SendToCount[]) => applyMessagesSent(sql, sends));
  return async (event, ctx) => {
    const fields = { eventId: event.id, type: event.type };
    switch (event.type) {
      case "dialogs.message.sent": {
        const result = await countSend({ data: event.data, requestId: event.requestId });
        applied.inc({ type: event.type, outcome: result.applied ? result.outcome : "duplicate" });
        ctx.log.info("message counted", {
          ...fields,
          transactionId: event.data.transactionId,
          outcome: result.outcome,
          redelivery: !result.applied,
          ...(result.reason ? { reason: result.reason } : {}),
        });
        // The reply's beforePublish refreshes the caches and the live stream (on a redelivery too),
        // before dialogs can see the outcome.
        return;
      }
      case "dialogs.message.cancelled": {
        const result = await applyMessageCancelled(sql, event.data);
        applied.inc({ type: event.type, outcome: result });
        ctx.log.info("send cancelled", {
          ...fields,
          transactionId: event.data.transactionId,
          result,
        });
        if (result !== "remembered") await afterChange([event.data.recipientId]);
        return;
      }
      case "dialogs.messages.read": {
        // Never permanent: a read is the user's fact. A failure is retried on the backoff schedule;
        // after the retry budget it waits in the dead letters, and a replay applies it once (ledger).
        const changed = await applyMessagesRead(sql, event.data);
        applied.inc({ type: event.type, outcome: changed ? "applied" : "duplicate" });
        ctx.log.info("messages read", {
          ...fields,
          transactionId: event.data.transactionId,
          count: event.data.count,
          redelivery: !changed,
        });
        await afterChange([event.data.readerId]);
        return;
      }
      default:
        throw new PermanentEventError(`counters does not handle events of type ${event.type}`);
    }
  };
}

/**
 * Runs before counters' outbox publishes replies: the recipients' counters are made current in
 * every cache (CoherentCounters.changed) before the reply, so by the time dialogs marks a message
 * committed the badge counts it, on every instance — also when the process died between its
 * commit and its own refresh.
 */
export function refreshBeforeReplies(afterChange: (userIds: string[]) => Promise<void>, sql: Sql) {
  return async (events: Envelope[]): Promise<void> => {
    const transactions = events.flatMap((e) =>
      e.type === "counters.message.counted" && e.data.outcome === "counted"
        ? [e.data.transactionId]
        : []
    );
    if (transactions.length === 0) return;
    const users = await sql<{ user_id: string }[]>`
      select distinct user_id from ledger where transaction_id = any(${transactions}::uuid[])`;
    await afterChange(users.map((u) => u.user_id));
  };
}
