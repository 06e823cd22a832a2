/** The counters side of the saga: applies dialogs' events, then refreshes the cache and the live stream. */
import type { JetStreamClient } from "@nats-io/jetstream";
import { type EventHandler, PermanentEventError } from "../shared/consumer.ts";
import type { Sql } from "../shared/db.ts";
import type { Envelope } from "../shared/events.ts";
import type { Counter } from "../shared/metrics.ts";
import { groupCommit } from "../shared/group_commit.ts";
import { currentTraceparent } from "../shared/tracing.ts";
import {
  applyDialogMuted,
  applyGroupMembersChanged,
  applyGroupMessageCancelled,
  applyGroupMessageDeleted,
  applyMessageCancelled,
  applyMessageDeleted,
  applyMessagesRead,
  userKey,
} from "./counter_store.ts";
import { applyMessagesSent, refreshAndReply, type SendToCount } from "./send_batch.ts";

/** Dependencies of the handler. */
export interface CounterEventsDeps {
  sql: Sql;
  /** Counts applied events by type and outcome. */
  applied: Counter;
  /**
   * Runs after a change has committed, with the cache keys of the states it changed: `user:<id>`
   * and `group:<id>`, lower case.
   */
  afterChange: (keys: string[]) => Promise<void>;
  /** Where the replies to sends are published, after the refresh and before the ack. */
  js: JetStreamClient;
  /** The subject prefix (`NATS_SUBJECT_PREFIX`). */
  prefix: string;
}

/** Handles one event from dialogs; unknown types can never be processed and are dead-lettered. */
export function createCounterEventHandler(deps: CounterEventsDeps): EventHandler {
  const { sql, applied, afterChange } = deps;
  // Sends arriving while a batch is being counted are counted together in the next transaction,
  // with one refresh and one publish round for the batch's replies (countAndReply in two halves):
  // the next batch is counted while this one's caches are refreshed and its replies published,
  // and each handler waits for its batch's replies before its event is acked.
  const countSend = groupCommit(async (sends: SendToCount[]) => {
    const results = await applyMessagesSent(sql, sends);
    const replied = refreshAndReply(deps, results);
    replied.catch(() => {}); // each handler of the batch awaits it and fails with it
    return results.map((result) => ({ result, replied }));
  });
  return async (event, ctx) => {
    const fields = { eventId: event.id, type: event.type };
    switch (event.type) {
      case "dialogs.message.sent":
      case "dialogs.group.message.sent": {
        const { result, replied } = await countSend({
          data: event.data,
          requestId: event.requestId,
          traceparent: currentTraceparent(),
        });
        // Refreshed and replied (on a redelivery too) before the ack: read-your-saga.
        await replied;
        applied.inc({ type: event.type, outcome: result.applied ? result.outcome : "duplicate" });
        ctx.log.info("message counted", {
          ...fields,
          transactionId: event.data.transactionId,
          outcome: result.outcome,
          redelivery: !result.applied,
          ...(result.reason ? { reason: result.reason } : {}),
          ...(result.seq !== undefined ? { seq: result.seq } : {}),
        });
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
        if (result !== "remembered") await afterChange([userKey(event.data.recipientId)]);
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
        await afterChange([userKey(event.data.readerId)]);
        return;
      }
      case "dialogs.group.message.cancelled": {
        const { result, keys } = await applyGroupMessageCancelled(sql, event.data);
        applied.inc({ type: event.type, outcome: result });
        ctx.log.info("group send cancelled", {
          ...fields,
          transactionId: event.data.transactionId,
          result,
        });
        if (keys.length > 0) await afterChange(keys);
        return;
      }
      case "dialogs.message.deleted": {
        const changed = await applyMessageDeleted(sql, event.data);
        applied.inc({ type: event.type, outcome: changed ? "applied" : "duplicate" });
        ctx.log.info("message deleted", {
          ...fields,
          transactionId: event.data.transactionId,
          redelivery: !changed,
        });
        await afterChange([userKey(event.data.recipientId)]);
        return;
      }
      case "dialogs.group.message.deleted": {
        const keys = await applyGroupMessageDeleted(sql, event.data);
        applied.inc({ type: event.type, outcome: "applied" });
        ctx.log.info("group message deleted", {
          ...fields,
          groupId: event.data.groupId,
          seq: event.data.seq,
        });
        await afterChange(keys);
        return;
      }
      case "dialogs.group.members.changed": {
        // An older state than the one kept changes nothing; the event's users are refreshed anyway
        // (a redelivery after a crash between commit and refresh).
        const changed = await applyGroupMembersChanged(sql, event.data);
        applied.inc({ type: event.type, outcome: changed.length > 0 ? "applied" : "duplicate" });
        ctx.log.info("group members changed", {
          ...fields,
          groupId: event.data.groupId,
          members: event.data.members.length,
          changed: changed.length,
        });
        await afterChange([...new Set(event.data.members.map((m) => userKey(m.userId)))]);
        return;
      }
      case "dialogs.dialog.muted": {
        const changed = await applyDialogMuted(sql, event.data);
        applied.inc({ type: event.type, outcome: changed ? "applied" : "duplicate" });
        ctx.log.info("dialog muted", { ...fields, muted: event.data.muted, redelivery: !changed });
        await afterChange([userKey(event.data.userId)]);
        return;
      }
      default:
        throw new PermanentEventError(`counters does not handle events of type ${event.type}`);
    }
  };
}

/**
 * Runs before counters' outbox relay publishes replies. Counters writes no reply to its outbox any
 * more (countAndReply publishes them after the counting transaction); the relay stays only to drain
 * the rows an earlier version wrote, during an upgrade, and this keeps read-your-saga for them: the
 * states a counted send changed are made current in every cache (CoherentCounters.changed) before
 * the reply. A dialog send changed its recipient's state; a group send its group's, its sender's and
 * those of the members it named.
 */
export function refreshBeforeReplies(afterChange: (keys: string[]) => Promise<void>, sql: Sql) {
  return async (events: Envelope[]): Promise<void> => {
    const transactions = events.flatMap((e) =>
      e.type === "counters.message.counted" && e.data.outcome === "counted"
        ? [e.data.transactionId]
        : []
    );
    if (transactions.length === 0) return;
    const keys = await sql<{ key: string }[]>`
      with sends as (
        select kind, user_id, peer_id, seq from ledger
        where transaction_id = any(${transactions}::uuid[]) and kind in ('send', 'group_send')
      )
      select 'user:' || user_id as key from sends
      union
      select 'group:' || peer_id from sends where kind = 'group_send'
      union
      select 'user:' || m.user_id from sends s
      join group_mentions m on m.group_id = s.peer_id and m.seq = s.seq
      where s.kind = 'group_send'`;
    await afterChange(keys.map((k) => k.key));
  };
}
