/**
 * Counting sent messages, alone or in batches (group commit): each send is decided on its ledger
 * entry (saga.ts) and written with the recipient's counter and version, in one transaction of two
 * round trips (applyToLedger). A group send is counted the same way and given its group's next seq
 * instead of a counter change (three round trips); its reply carries the seq. A transaction already
 * in the ledger changes nothing and is answered again under the same reply id (a send cancelled
 * first gets a "failed" one). A refusal by the database (a constraint) rolls the transaction back; a
 * lone send then records the refusal (a ledger entry that changes nothing and a "failed" reply), a
 * batch is applied one send at a time so only the refused one fails. Other errors propagate so the
 * events are redelivered.
 *
 * The replies are not written to an outbox: countAndReply refreshes the caches and publishes them
 * after the COMMIT, before the events are acknowledged; the ledger makes the redelivery that a
 * failure there brings answer again with the same reply id.
 */
import type { JetStreamClient } from "@nats-io/jetstream";
import { isPermanentDbError, type Sql } from "../shared/db.ts";
import { type Envelope, type EventData, subjectFor } from "../shared/events.ts";
import { publishEvents } from "../shared/outbox.ts";
import { recordSpan, spanClock } from "../shared/tracing.ts";
import { applyToLedger, countedSendKeys, type LedgerChange } from "./counter_store.ts";

/** One "message sent" (dialog or group) to count. */
export interface SendToCount {
  data: EventData<"dialogs.message.sent"> | EventData<"dialogs.group.message.sent">;
  requestId?: string;
  /** The trace of the event's handling (tracing on): the batch serves many traces. */
  traceparent?: string | null;
}

/** What applying a "message sent" did. */
export interface IncrementResult {
  /** False when the ledger already had this transaction (a redelivery or a send after its cancel). */
  applied: boolean;
  outcome: "counted" | "failed";
  reason?: string;
  /** The seq a counted group message was given. */
  seq?: number;
  /** The reply to publish (a repeat's under the ledger's reply id). */
  reply: Envelope<"counters.message.counted">;
  /** The cache keys of the states a counted send changed (on a repeat too); none when failed. */
  keys: string[];
}

/** What countAndReply needs besides the sends. */
export interface ReplyDeps {
  sql: Sql;
  js: JetStreamClient;
  /** The subject prefix (`NATS_SUBJECT_PREFIX`). */
  prefix: string;
  /** Makes the states of these cache keys current in every cache and live stream. */
  afterChange: (keys: string[]) => Promise<void>;
}

/**
 * Counts `sends` (applyMessagesSent), then, once committed: refreshes the states the counted ones
 * changed, repeats included (the process may have died between a commit and its refresh), so every
 * cache counts them before dialogs can see the outcome (read-your-saga); then publishes every reply
 * with msgID = its id and waits for the PubAcks. Throws when the refresh or a publish failed: the
 * events are then redelivered and answered again under the same reply ids (JetStream drops a repeat
 * within its deduplication window; dialogs applies a reply once anyway).
 */
export async function countAndReply(
  deps: ReplyDeps,
  sends: SendToCount[],
): Promise<IncrementResult[]> {
  const results = await applyMessagesSent(deps.sql, sends);
  await refreshAndReply(deps, results);
  return results;
}

/**
 * countAndReply's second half, for sends whose counting committed: one refresh of the states the
 * counted ones changed, then one publish round for every reply (see countAndReply).
 */
export async function refreshAndReply(
  { js, prefix, afterChange }: Omit<ReplyDeps, "sql">,
  results: IncrementResult[],
): Promise<void> {
  const started = spanClock();
  const keys = [...new Set(results.flatMap((r) => r.keys))];
  if (keys.length > 0) await afterChange(keys);
  // In each send's trace: what happened between its commit and its publish.
  const ended = spanClock();
  results.forEach(({ reply }) => {
    recordSpan("before publish", reply.traceparent ?? null, started, ended, {
      "batch.size": results.length,
    });
  });
  await publishEvents(
    js,
    results.map(({ reply }) => ({
      id: reply.id,
      type: reply.type,
      subject: subjectFor(prefix, reply.type),
      payload: JSON.stringify(reply),
      requestId: reply.requestId,
      traceparent: reply.traceparent,
    })),
  );
}

/** Counts one sent message for its recipient (see the module doc). */
export async function applyMessageSent(
  sql: Sql,
  data: SendToCount["data"],
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
    return await recordSends(sql, sends);
  } catch (err) {
    if (!isPermanentDbError(err)) throw err;
    if (sends.length === 1) return await recordSends(sql, sends, describeRefusal(err));
    const results: IncrementResult[] = [];
    for (const s of sends) results.push(...await applyMessagesSent(sql, [s]));
    return results;
  }
}

/** Records `sends` as counted, or as refused with `refusal`. */
async function recordSends(
  sql: Sql,
  sends: SendToCount[],
  refusal?: string,
): Promise<IncrementResult[]> {
  const started = spanClock();
  const changes: LedgerChange[] = sends.map(({ data, requestId, traceparent }) => {
    const event = { type: "sent", replyId: crypto.randomUUID(), refusal } as const;
    const { transactionId, messageId } = data;
    if (!("groupId" in data)) {
      return {
        transactionId,
        userId: data.recipientId,
        peerId: data.senderId,
        messageId,
        requestId,
        traceparent,
        event,
      };
    }
    const mentions = { userIds: data.mentions, all: data.mentionsAll };
    return {
      transactionId,
      userId: data.senderId,
      peerId: data.groupId,
      messageId,
      requestId,
      traceparent,
      event,
      kind: "group_send",
      mentions,
    } as const;
  });
  const decisions = await applyToLedger(sql, changes);
  // One span in each send's trace for the transaction that counted it.
  const ended = spanClock();
  decisions.forEach(({ step, reply }, i) => {
    recordSpan("counting transaction", sends[i]!.traceparent, started, ended, {
      "db.system": "postgresql",
      "batch.size": sends.length,
      "saga.step": step,
      "saga.outcome": reply!.outcome,
    });
  });
  return decisions.map(({ step, reply, seq, replyEvent }, i) => ({
    applied: step === "count" || step === "refuse",
    outcome: reply!.outcome,
    reason: reply!.reason,
    ...(seq !== undefined ? { seq } : {}),
    reply: replyEvent!,
    keys: reply!.outcome === "counted" ? countedSendKeys(changes[i]!) : [],
  }));
}

/** A one-line reason naming the constraint, without SQL or values. */
function describeRefusal(err: unknown): string {
  const e = err as { constraint_name?: string; code?: string };
  const what = e.constraint_name ? `constraint ${e.constraint_name}` : `error ${e.code}`;
  return `the counters database refused the update (${what})`;
}
