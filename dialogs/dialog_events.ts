/** The dialogs side of the saga: applies counters' replies to pending messages. */
import { type EventHandler, PermanentEventError } from "../shared/consumer.ts";
import type { Sql } from "../shared/db.ts";
import type { Counter, Histogram } from "../shared/metrics.ts";
import { applyCountedReply } from "./message_store.ts";

/** Dependencies of the handler. */
export interface DialogEventsDeps {
  sql: Sql;
  sagaOutcomes: Counter;
  /** Seconds from send to committed or failed. */
  sagaLatency: Histogram;
}

/** Handles one event from counters; unknown types and unknown transactions are dead-lettered. */
export function createDialogEventHandler(deps: DialogEventsDeps): EventHandler {
  return async (event, ctx) => {
    switch (event.type) {
      case "counters.message.counted": {
        const result = await applyCountedReply(deps.sql, event.data);
        if (result.kind === "unknown") {
          throw new PermanentEventError(
            `no message has transaction ${event.data.transactionId}`,
          );
        }
        if (result.kind === "applied") {
          deps.sagaOutcomes.inc({ status: result.status });
          deps.sagaLatency.observe((Date.now() - result.createdAt.getTime()) / 1000, {
            status: result.status,
          });
        }
        ctx.log.info(
          result.kind === "applied" ? "saga finished" : "late or repeated reply ignored",
          {
            eventId: event.id,
            transactionId: event.data.transactionId,
            messageId: result.messageId,
            status: result.status,
            ...(event.data.reason ? { reason: event.data.reason } : {}),
          },
        );
        return;
      }
      default:
        throw new PermanentEventError(`dialogs does not handle events of type ${event.type}`);
    }
  };
}
