/** The counters side of the saga: handles dialogs' events and keeps the cache ahead of the replies. */
import { type EventHandler, PermanentEventError } from "../shared/consumer.ts";
import type { Sql } from "../shared/db.ts";
import type { Envelope } from "../shared/events.ts";
import type { Counter } from "../shared/metrics.ts";
import type { CounterReader } from "./counter_reads.ts";
import { applyMessageSent } from "./counter_store.ts";

/** Dependencies of the handler. */
export interface CounterEventsDeps {
  sql: Sql;
  prefix: string;
  increments: Counter;
}

/** Handles one event from dialogs; unknown types can never be processed and are dead-lettered. */
export function createCounterEventHandler(deps: CounterEventsDeps): EventHandler {
  return async (event, ctx) => {
    switch (event.type) {
      case "dialogs.message.sent": {
        const result = await applyMessageSent(deps.sql, deps.prefix, event.data, event.requestId);
        deps.increments.inc({ outcome: result.applied ? result.outcome : "duplicate" });
        ctx.log.info("message counted", {
          eventId: event.id,
          transactionId: event.data.transactionId,
          outcome: result.outcome,
          redelivery: !result.applied,
          ...(result.reason ? { reason: result.reason } : {}),
        });
        return;
      }
      default:
        throw new PermanentEventError(`counters does not handle events of type ${event.type}`);
    }
  };
}

/**
 * Runs before counters' outbox publishes replies: the recipients' cache entries are refreshed first,
 * so by the time dialogs marks a message committed, Redis already counts it.
 */
export function refreshCacheBeforeReplies(reader: CounterReader, sql: Sql) {
  return async (events: Envelope[]): Promise<void> => {
    const transactions = events.flatMap((e) =>
      e.type === "counters.message.counted" && e.data.outcome === "counted"
        ? [e.data.transactionId]
        : []
    );
    if (transactions.length === 0) return;
    const users = await sql<{ user_id: string }[]>`
      select distinct user_id from ledger where transaction_id = any(${transactions}::uuid[])`;
    await Promise.all(users.map((u) => reader.refresh(u.user_id)));
  };
}
