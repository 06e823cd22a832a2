/** Postgres access for dialogs: sending (message + outbox event in one transaction), reading, replies. */
import type { Sql, Tx } from "../shared/db.ts";
import { createEvent, type EventData } from "../shared/events.ts";
import { enqueueEvent, enqueueEvents, outboxTransaction } from "../shared/outbox.ts";
import type { MessageRow, MessageStatus } from "./messages.ts";
import { decide, type MessageCommand, type MessageDecision, TIMEOUT_REASON } from "./saga.ts";

const COLUMNS = "id, transaction_id, sender_id, recipient_id, text, status, created_at, read_at";

/** A send request after validation. */
export interface SendInput {
  senderId: string;
  recipientId: string;
  text: string;
  idempotencyKey?: string;
  requestId?: string;
}

/** The stored message and whether this call created it (false: an Idempotency-Key replay). */
export interface SendResult {
  message: MessageRow;
  created: boolean;
}

/** A page of a dialog: at most `limit` messages, older than `before` when given. */
export interface DialogPage {
  limit: number;
  before?: MessageRow;
}

/** A dialog of the caller's list: the peer and the last message the caller may see. */
export interface DialogSummary {
  peerId: string;
  lastMessage: MessageRow;
}

/** A mark-read request: the reader's committed messages from `peerId`, up to `upTo` (all without). */
export interface ReadInput {
  readerId: string;
  peerId: string;
  upTo?: MessageRow;
  requestId?: string;
}

/**
 * What the dialogs routes ask of the stored messages. postgresMessageStore is the service's;
 * the route tests run against an in-memory one with the same behaviour.
 */
export interface MessageStore {
  /** See sendMessage. */
  sendMessage(input: SendInput): Promise<SendResult>;
  /** See findMessage. */
  findMessage(id: string): Promise<MessageRow | undefined>;
  /** See listDialog. */
  listDialog(userId: string, peerId: string, page: DialogPage): Promise<MessageRow[]>;
  /** See listDialogs. */
  listDialogs(userId: string, limit: number): Promise<DialogSummary[]>;
  /** See markMessagesRead. */
  markMessagesRead(input: ReadInput): Promise<ReadResult>;
}

/** The MessageStore over the dialogs database. */
export function postgresMessageStore(sql: Sql): MessageStore {
  return {
    sendMessage: (input) => sendMessage(sql, input),
    findMessage: (id) => findMessage(sql, id),
    listDialog: (userId, peerId, page) => listDialog(sql, userId, peerId, page),
    listDialogs: (userId, limit) => listDialogs(sql, userId, limit),
    markMessagesRead: (input) => markMessagesRead(sql, input),
  };
}

/**
 * Stores the message as pending and its "message sent" event in one transaction. With an
 * Idempotency-Key already used by this sender, returns that message and creates nothing.
 */
export async function sendMessage(sql: Sql, input: SendInput): Promise<SendResult> {
  // Two round trips: BEGIN with the message, the event with COMMIT.
  return await outboxTransaction(sql, async (tx, withCommit) => {
    const id = crypto.randomUUID();
    const transactionId = crypto.randomUUID();
    // ON CONFLICT waits for a concurrent send with the same key, then yields to it.
    const [created] = await tx<MessageRow[]>`
      insert into messages (id, transaction_id, sender_id, recipient_id, text, idempotency_key,
                            request_id)
      values (${id}, ${transactionId}, ${input.senderId}, ${input.recipientId}, ${input.text},
              ${input.idempotencyKey ?? null}, ${input.requestId ?? null})
      on conflict (sender_id, idempotency_key) where idempotency_key is not null do nothing
      returning ${tx.unsafe(COLUMNS)}`;
    if (!created) {
      const [existing] = await tx<MessageRow[]>`
        select ${tx.unsafe(COLUMNS)} from messages
        where sender_id = ${input.senderId} and idempotency_key = ${input.idempotencyKey!}`;
      return { message: existing!, created: false };
    }
    const event = createEvent("dialogs.message.sent", {
      transactionId,
      messageId: id,
      senderId: input.senderId,
      recipientId: input.recipientId,
      sentAt: created.created_at.toISOString(),
    }, { requestId: input.requestId });
    withCommit(enqueueEvent(tx, event));
    return { message: created, created: true };
  });
}

/** One message by id, or undefined. */
export async function findMessage(sql: Sql, id: string): Promise<MessageRow | undefined> {
  const [row] = await sql<MessageRow[]>`
    select ${sql.unsafe(COLUMNS)} from messages where id = ${id}`;
  return row;
}

/** The dialog between `userId` and `peerId` as `userId` may see it, newest first. */
export async function listDialog(
  sql: Sql,
  userId: string,
  peerId: string,
  options: DialogPage,
): Promise<MessageRow[]> {
  const before = options.before;
  return await sql<MessageRow[]>`
    select ${sql.unsafe(COLUMNS)} from (
      select * from messages where sender_id = ${userId} and recipient_id = ${peerId}
      union all
      select * from messages
      where sender_id = ${peerId} and recipient_id = ${userId} and status = 'committed'
    ) m
    ${
    // Compared in SQL: JavaScript dates would drop created_at's microseconds.
    before
      ? sql`where (created_at, id) < (select created_at, id from messages where id = ${before.id})`
      : sql``}
    order by created_at desc, id desc
    limit ${options.limit}`;
}

/** The caller's dialogs with the last message each may see, most recent activity first. */
export async function listDialogs(
  sql: Sql,
  userId: string,
  limit: number,
): Promise<DialogSummary[]> {
  const rows = await sql<(MessageRow & { peer_id: string })[]>`
    select * from (
      select distinct on (peer_id) *
      from (
        select recipient_id as peer_id, ${sql.unsafe(COLUMNS)} from messages
        where sender_id = ${userId}
        union all
        select sender_id as peer_id, ${sql.unsafe(COLUMNS)} from messages
        where recipient_id = ${userId} and status = 'committed'
      ) visible
      order by peer_id, created_at desc, id desc
    ) latest
    order by created_at desc, id desc
    limit ${limit}`;
  return rows.map(({ peer_id, ...message }) => ({ peerId: peer_id, lastMessage: message }));
}

/** What applying counters' reply did; `timedOut`: it came too late, the message failed and was cancelled. */
export type ReplyResult =
  | {
    kind: "applied";
    status: MessageStatus;
    messageId: string;
    createdAt: Date;
    timedOut: boolean;
  }
  | { kind: "ignored"; status: MessageStatus; messageId: string }
  | { kind: "unknown" };

/**
 * Applies counters' outcomes to their pending messages in one transaction of two round trips: BEGIN
 * with the rows, the updates with COMMIT. One result per reply, in order; a reply given twice is
 * applied once, a finished message is left as it is. A count reported more than `timeoutMs` after
 * the message was created fails the message and writes its cancel (saga.ts), in this transaction,
 * so no late reply ever commits a message whenever the sweeper runs.
 */
export async function applyCountedReplies(
  sql: Sql,
  replies: EventData<"counters.message.counted">[],
  timeoutMs: number,
): Promise<ReplyResult[]> {
  return await outboxTransaction(sql, async (tx, withCommit) => {
    // Locked in id order, so two batches sharing messages cannot deadlock. The age is by Postgres'
    // clock, the one created_at and the sweeper use.
    const rows = await tx<SagaRow[]>`
      select ${tx.unsafe(SAGA_COLUMNS)},
             (extract(epoch from clock_timestamp() - created_at) * 1000)::float8 as age_ms
      from messages
      where transaction_id = any(${replies.map((r) => r.transactionId)}::uuid[])
      order by id for update`;
    const byTransaction = new Map(rows.map((r) => [r.transaction_id, r]));
    const finished: Finished[] = [];
    const results = replies.map((data): ReplyResult => {
      const row = byTransaction.get(data.transactionId.toLowerCase());
      if (!row) return { kind: "unknown" };
      const { outcome, reason } = data;
      const decision = decideOn(row, { type: "reply", outcome, reason, timeoutMs }, finished);
      if ("ignored" in decision) return { kind: "ignored", status: row.status, messageId: row.id };
      return {
        kind: "applied",
        status: decision.status,
        messageId: row.id,
        createdAt: row.created_at,
        timedOut: decision.cancel,
      };
    });
    writeFinished(tx, finished).forEach(withCommit);
    return results;
  });
}

/** A message as the saga loads it: what the decision needs and what a cancel names. */
interface SagaRow {
  id: string;
  transaction_id: string;
  status: MessageStatus;
  created_at: Date;
  age_ms: number;
  sender_id: string;
  recipient_id: string;
  request_id: string | null;
}

const SAGA_COLUMNS = "id, transaction_id, status, created_at, sender_id, recipient_id, request_id";

/** A message the saga finished in this transaction, with the decision that finished it. */
type Finished = { row: SagaRow; status: MessageStatus; reason: string | null; cancel: boolean };

/**
 * Decides `command` for the loaded row; a finishing decision is collected in `finished` and
 * applied to the row in memory, so a later command for it in the same batch meets the new status.
 */
function decideOn(row: SagaRow, command: MessageCommand, finished: Finished[]): MessageDecision {
  const decision = decide({ status: row.status, ageMs: row.age_ms }, command);
  if (!("ignored" in decision)) {
    row.status = decision.status;
    finished.push({ row, ...decision });
  }
  return decision;
}

/** The statements that write the finished messages and their cancels (for withCommit). */
function writeFinished(tx: Tx, finished: Finished[]): PromiseLike<unknown>[] {
  if (finished.length === 0) return [];
  const cancels = finished.filter((f) => f.cancel).map((f) => cancelEvent(f.row));
  return [
    tx`
      update messages m
      set status = u.status, finished_at = now(), failure_reason = u.reason
      from unnest(${finished.map((f) => f.row.id)}::uuid[], ${
      finished.map((f) => f.status)
    }::text[],
                  ${finished.map((f) => f.reason)}::text[]) as u(id, status, reason)
      where m.id = u.id`,
    enqueueEvents(tx, cancels),
  ];
}

/** The cancel of a send that timed out: counters takes its count back, or never counts it. */
function cancelEvent(row: SagaRow) {
  return createEvent("dialogs.message.cancelled", {
    transactionId: row.transaction_id,
    messageId: row.id,
    senderId: row.sender_id,
    recipientId: row.recipient_id,
    reason: TIMEOUT_REASON,
  }, { requestId: row.request_id ?? undefined });
}

/** What marking a dialog read did. */
export interface ReadResult {
  read: number;
  transactionId?: string;
}

/**
 * Marks the peer's committed, unread messages to the reader as read, up to and including `upTo`
 * (everything without it), and writes the "messages read" event in the same transaction.
 */
export async function markMessagesRead(
  sql: Sql,
  input: ReadInput,
): Promise<ReadResult> {
  const { readerId, peerId, upTo } = input;
  return await outboxTransaction(sql, async (tx, withCommit) => {
    // Concurrent reads of one dialog each take only rows still unread, so none is counted twice.
    const rows = await tx<{ id: string; read_at: Date }[]>`
      update messages set read_at = now()
      where recipient_id = ${readerId} and sender_id = ${peerId}
        and status = 'committed' and read_at is null
        ${
      upTo
        ? tx`and (created_at, id) <= (select created_at, id from messages where id = ${upTo.id})`
        : tx``
    }
      returning id, read_at`;
    if (rows.length === 0) return { read: 0 };
    const transactionId = crypto.randomUUID();
    withCommit(enqueueEvent(
      tx,
      createEvent("dialogs.messages.read", {
        transactionId,
        readerId,
        peerId,
        count: rows.length,
        readAt: rows[0]!.read_at.toISOString(),
      }, { requestId: input.requestId }),
    ));
    return { read: rows.length, transactionId };
  });
}

/** A send the sweeper failed because its saga took too long. */
export interface TimedOutSend {
  id: string;
  created_at: Date;
  request_id: string | null;
  transaction_id: string;
  sender_id: string;
  recipient_id: string;
}

/**
 * Fails sends pending for longer than `timeoutMs` (at most `limit`) and writes a cancel event for
 * each, in one transaction of two round trips: BEGIN with the rows, the updates with COMMIT. SKIP
 * LOCKED lets several instances sweep at once; a reply being applied holds the row, so a message is
 * either committed by its reply or failed here, never both.
 */
export async function failTimedOutSends(
  sql: Sql,
  timeoutMs: number,
  limit = SWEEP_BATCH_SIZE,
): Promise<TimedOutSend[]> {
  return await outboxTransaction(sql, async (tx, withCommit) => {
    // The query only finds the candidates (messages_pending serves it); the decision rules.
    const rows = await tx<SagaRow[]>`
      select ${tx.unsafe(SAGA_COLUMNS)},
             (extract(epoch from now() - created_at) * 1000)::float8 as age_ms
      from messages
      where status = 'pending' and created_at < now() - make_interval(secs => ${timeoutMs / 1000})
      order by created_at
      limit ${limit}
      for update skip locked`;
    const finished: Finished[] = [];
    for (const row of rows) decideOn(row, { type: "timeout", timeoutMs }, finished);
    writeFinished(tx, finished).forEach(withCommit);
    return finished.map((f) => f.row);
  });
}

/** Sends the sweeper fails per transaction. */
export const SWEEP_BATCH_SIZE = 100;

/**
 * One sweeper tick: fails timed-out sends batch after batch while a batch comes back full, so a
 * backlog of any size is cleared in one tick; `onBatch` sees each batch after its commit. Returns
 * how many it failed. Instances sweeping at once take different rows (failTimedOutSends).
 */
export async function sweepTimedOutSends(
  sql: Sql,
  timeoutMs: number,
  options: { batchSize?: number; onBatch?: (failed: TimedOutSend[]) => void } = {},
): Promise<number> {
  const batchSize = options.batchSize ?? SWEEP_BATCH_SIZE;
  if (!Number.isInteger(batchSize) || batchSize <= 0) {
    throw new RangeError(`batchSize must be a positive integer, got ${batchSize}`);
  }
  let total = 0;
  while (true) {
    const failed = await failTimedOutSends(sql, timeoutMs, batchSize);
    total += failed.length;
    if (failed.length > 0) options.onBatch?.(failed);
    if (failed.length < batchSize) return total;
  }
}
