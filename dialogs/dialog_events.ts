/** The dialogs side of the saga: applies counters' replies to pending messages. */
import { type EventHandler, PermanentEventError } from "../shared/consumer.ts";
import type { Sql } from "../shared/db.ts";
import type { EventData } from "../shared/events.ts";
import { groupCommit } from "../shared/group_commit.ts";
import { inSpan } from "../shared/tracing.ts";
import type { Counter, Histogram } from "../shared/metrics.ts";
import { applyCountedReplies } from "./message_store.ts";

/** Dependencies of the handler. */
export interface DialogEventsDeps {
  sql: Sql;
  sagaOutcomes: Counter;
  /** Seconds from send to committed or failed. */
  sagaLatency: Histogram;
  /** A count reported later than this after the send fails the message (SAGA_TIMEOUT_MS). */
  sagaTimeoutMs: number;
}

/** Handles one event from counters; unknown types and unknown transactions are dead-lettered. */
export function createDialogEventHandler(deps: DialogEventsDeps): EventHandler {
  // Replies arriving while a batch is being applied are applied together in the next transaction.
  const applyReply = groupCommit((replies: EventData<"counters.message.counted">[]) =>
    applyCountedReplies(deps.sql, replies, deps.sagaTimeoutMs)
  );
  return async (event, ctx) => {
    switch (event.type) {
      case "counters.message.counted": {
        // A span in the saga's trace for applying its reply; named by how the saga ended.
        const result = await inSpan("apply reply", {}, async (span) => {
          const result = await applyReply(event.data);
          if (result.kind === "applied") {
            span?.updateName(`saga ${result.timedOut ? "timed out" : result.status}`);
          }
          return result;
        });
        if (result.kind === "unknown") {
          throw new PermanentEventError(
            `no message has transaction ${event.data.transactionId}`,
          );
        }
        if (result.kind === "invalid") {
          throw new PermanentEventError(`message ${result.messageId}: ${result.reason}`);
        }
        if (result.kind === "applied") {
          deps.sagaOutcomes.inc({ status: result.timedOut ? "timed_out" : result.status });
          deps.sagaLatency.observe((Date.now() - result.createdAt.getTime()) / 1000, {
            status: result.status,
          });
        }
        if (result.kind === "applied" && result.timedOut) {
          ctx.log.warn("reply came after the saga timeout; failed and cancelled", {
            eventId: event.id,
            transactionId: event.data.transactionId,
            messageId: result.messageId,
          });
          return;
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
