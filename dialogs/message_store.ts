/**
 * Postgres access for dialogs: sending (the message is the durable record of its event), reading,
 * deleting, counters' replies and the sweeper; groups and mutes are in group_store.ts.
 */
import { isUnavailableDbError, type Sql, type Tx } from "../shared/db.ts";
import { createEvent, type Envelope, type EventData } from "../shared/events.ts";
import { groupCommitIsolated } from "../shared/group_commit.ts";
import { currentTraceparent, recordSpan, spanClock } from "../shared/tracing.ts";
import {
  enqueueEvent,
  enqueueEvents,
  outboxTransaction,
  publishAfterCommit,
} from "../shared/outbox.ts";
import {
  addMembers,
  type AddMembersInput,
  type AddMembersResult,
  createGroup,
  type CreateGroupInput,
  findGroup,
  type GroupReadInput,
  type GroupReadResult,
  type GroupRow,
  type GroupSendInput,
  type GroupSendResult,
  type GroupSummary,
  type GroupWithMe,
  listGroup,
  listGroupSummaries,
  markGroupRead,
  muteDialog,
  muteGroup,
  type MuteInput,
  removeMember,
  type RemoveMemberInput,
  type RemoveMemberResult,
  sendGroupMessage,
} from "./group_store.ts";
import { MESSAGE_COLUMNS, type MessageRow, type MessageStatus } from "./messages.ts";
import { decide, type MessageCommand, type MessageDecision, TIMEOUT_REASON } from "./saga.ts";

const COLUMNS = MESSAGE_COLUMNS;

/** A send request after validation. */
export interface SendInput {
  senderId: string;
  recipientId: string;
  text: string;
  idempotencyKey?: string;
  requestId?: string;
  /** The request's trace (tracing on): the batch it is stored in serves many traces. */
  traceparent?: string | null;
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
  /** See deleteMessage. */
  deleteMessage(input: DeleteInput): Promise<DeleteResult>;
  /** See createGroup (group_store.ts). */
  createGroup(input: CreateGroupInput): Promise<GroupRow>;
  /** See findGroup (group_store.ts). */
  findGroup(groupId: string, userId: string): Promise<GroupWithMe | undefined>;
  /** See addMembers (group_store.ts). */
  addMembers(input: AddMembersInput): Promise<AddMembersResult>;
  /** See removeMember (group_store.ts). */
  removeMember(input: RemoveMemberInput): Promise<RemoveMemberResult>;
  /** See sendGroupMessage (group_store.ts). */
  sendGroupMessage(input: GroupSendInput): Promise<GroupSendResult>;
  /** See listGroup (group_store.ts). */
  listGroup(userId: string, groupId: string, page: DialogPage): Promise<MessageRow[]>;
  /** See listGroupSummaries (group_store.ts). */
  listGroupSummaries(userId: string, limit: number): Promise<GroupSummary[]>;
  /** See markGroupRead (group_store.ts). */
  markGroupRead(input: GroupReadInput): Promise<GroupReadResult | undefined>;
  /** See muteGroup (group_store.ts). */
  muteGroup(input: MuteInput): Promise<boolean>;
  /** See muteDialog (group_store.ts); the mute's version. */
  muteDialog(input: MuteInput): Promise<number>;
}

/** The MessageStore over the dialogs database. */
export function postgresMessageStore(sql: Sql): MessageStore {
  return {
    sendMessage: groupCommittedSends(sql),
    findMessage: (id) => findMessage(sql, id),
    listDialog: (userId, peerId, page) => listDialog(sql, userId, peerId, page),
    listDialogs: (userId, limit) => listDialogs(sql, userId, limit),
    markMessagesRead: (input) => markMessagesRead(sql, input),
    deleteMessage: (input) => deleteMessage(sql, input),
    createGroup: (input) => createGroup(sql, input),
    findGroup: (groupId, userId) => findGroup(sql, groupId, userId),
    addMembers: (input) => addMembers(sql, input),
    removeMember: (input) => removeMember(sql, input),
    sendGroupMessage: (input) => sendGroupMessage(sql, input),
    listGroup: (userId, groupId, page) => listGroup(sql, userId, groupId, page),
    listGroupSummaries: (userId, limit) => listGroupSummaries(sql, userId, limit),
    markGroupRead: (input) => markGroupRead(sql, input),
    muteGroup: (input) => muteGroup(sql, input),
    muteDialog: (input) => muteDialog(sql, input),
  };
}

/**
 * Stores the message as pending; its "message sent" event is published after the commit (see
 * sendMessages). With an Idempotency-Key already used by this sender, returns that message and
 * creates nothing.
 */
export async function sendMessage(sql: Sql, input: SendInput): Promise<SendResult> {
  return (await sendMessages(sql, [input]))[0]!;
}

/** Most sends group-committed in one transaction. */
export const SEND_BATCH_SIZE = 64;

/**
 * sendMessage for concurrent callers: sends arriving while a batch is being stored go together in
 * the next transaction (group commit). A batch the database refused is stored again one send at a
 * time, so only the send at fault fails; a batch whose connection was lost (its COMMIT may have
 * happened) fails every send in it, as a lone send's would.
 */
export function groupCommittedSends(sql: Sql): (input: SendInput) => Promise<SendResult> {
  const send = groupCommitIsolated((inputs: SendInput[]) => sendMessages(sql, inputs), {
    maxBatch: SEND_BATCH_SIZE,
    retryable: (err) => !isUnavailableDbError(err),
  });
  // The caller's trace is taken here, in its request: the batch runs in another's.
  return (input) => send({ ...input, traceparent: input.traceparent ?? currentTraceparent() });
}

/**
 * Stores `inputs` as pending messages in one transaction (BEGIN with the messages, then COMMIT; a
 * round trip more reads the messages of Idempotency-Keys used before). One result per input, in
 * order. A key used before by its sender, or twice in `inputs`, returns the first message and
 * creates nothing.
 *
 * Each created message's "message sent" event has no outbox row: the pending message is its
 * durable record. It goes to this process's relay after the commit (publishAfterCommit), with the
 * message's id as event id; should it not get out, republishStaleSends publishes it again from the
 * row under the same id.
 */
export async function sendMessages(sql: Sql, inputs: SendInput[]): Promise<SendResult[]> {
  if (inputs.length === 0) return [];
  const started = spanClock();
  const results = await outboxTransaction(sql, async (tx) => {
    const ids = inputs.map(() => crypto.randomUUID());
    const transactionIds = inputs.map(() => crypto.randomUUID());
    // ON CONFLICT waits for a concurrent send with the same key, then yields to it; a key given
    // twice in the batch is inserted by its first send only.
    const created = await tx<MessageRow[]>`
      insert into messages (id, transaction_id, sender_id, recipient_id, text, idempotency_key,
                            request_id)
      select * from unnest(${ids}::uuid[], ${transactionIds}::uuid[],
                           ${inputs.map((i) => i.senderId)}::uuid[],
                           ${inputs.map((i) => i.recipientId)}::uuid[],
                           ${inputs.map((i) => i.text)}::text[],
                           ${inputs.map((i) => i.idempotencyKey ?? null)}::text[],
                           ${inputs.map((i) => i.requestId ?? null)}::text[])
      on conflict (sender_id, idempotency_key) where idempotency_key is not null do nothing
      returning ${tx.unsafe(COLUMNS)}`;
    const byId = new Map(created.map((row) => [row.id, row]));
    const replays = inputs.filter((_, i) => !byId.has(ids[i]!));
    // A statement of its own, so it sees the messages this one waited for.
    const existing = replays.length === 0
      ? []
      : await tx<(MessageRow & { idempotency_key: string })[]>`
      select ${tx.unsafe(COLUMNS)}, idempotency_key from messages
      where (sender_id, idempotency_key) in (
        select * from unnest(${replays.map((i) => i.senderId)}::uuid[],
                             ${replays.map((i) => i.idempotencyKey!)}::text[]))`;
    const byKey = new Map(
      existing.map((row) => [idempotencyKeyOf(row.sender_id, row.idempotency_key), row]),
    );
    const events: Envelope[] = [];
    const results = inputs.map((input, i): SendResult => {
      const row = byId.get(ids[i]!);
      if (!row) {
        const key = idempotencyKeyOf(input.senderId, input.idempotencyKey!);
        const { idempotency_key: _, ...message } = byKey.get(key)!;
        return { message, created: false };
      }
      events.push(sentEvent(row, input.requestId ?? null, input.traceparent ?? null));
      return { message: row, created: true };
    });
    publishAfterCommit(tx, events);
    return results;
  });
  // One span in each request's trace for the transaction that stored its message.
  const ended = spanClock();
  for (const input of inputs) {
    recordSpan("send transaction", input.traceparent, started, ended, {
      "db.system": "postgresql",
      "batch.size": inputs.length,
    });
  }
  return results;
}

/**
 * The "message sent" event of a dialog message, built from its row alone, so that a republish is
 * the same event: its id is the message's id (JetStream drops a repeat within its duplicate
 * window), it occurred when the message was created.
 */
function sentEvent(
  row: Pick<MessageRow, "id" | "transaction_id" | "sender_id" | "recipient_id" | "created_at">,
  requestId: string | null,
  traceparent: string | null,
): Envelope<"dialogs.message.sent"> {
  return createEvent("dialogs.message.sent", {
    transactionId: row.transaction_id,
    messageId: row.id,
    senderId: row.sender_id,
    recipientId: row.recipient_id!,
    sentAt: row.created_at.toISOString(),
  }, { id: row.id, now: row.created_at, requestId: requestId ?? undefined, traceparent });
}

/** A map key of an Idempotency-Key of a sender. */
function idempotencyKeyOf(senderId: string, key: string): string {
  return `${senderId.toLowerCase()} ${key}`;
}

/** One message by id, or undefined. */
export async function findMessage(sql: Sql, id: string): Promise<MessageRow | undefined> {
  const [row] = await sql<MessageRow[]>`
    select ${sql.unsafe(COLUMNS)} from messages where id = ${id}`;
  return row;
}

/** The dialog between `userId` and `peerId` as `userId` may see it, newest first; deleted ones hidden. */
export async function listDialog(
  sql: Sql,
  userId: string,
  peerId: string,
  options: DialogPage,
): Promise<MessageRow[]> {
  const before = options.before;
  return await sql<MessageRow[]>`
    select ${sql.unsafe(COLUMNS)} from (
      select * from messages
      where sender_id = ${userId} and recipient_id = ${peerId} and status <> 'deleted'
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
        where sender_id = ${userId} and recipient_id is not null and status <> 'deleted'
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
  | { kind: "unknown" }
  | { kind: "invalid"; messageId: string; reason: string };

/**
 * Applies counters' outcomes to their pending messages in one transaction of two round trips: BEGIN
 * with the rows, the updates with COMMIT. One result per reply, in order; a reply given twice is
 * applied once, a finished message is left as it is. A count reported more than `timeoutMs` after
 * the message was created fails the message and writes its cancel (saga.ts), in this transaction,
 * so no late reply ever commits a message whenever the sweeper runs. A group message commits with
 * the reply's `seq` and moves its group's last_committed_seq up to it; a count of a group message
 * without a `seq` is `invalid` and changes nothing.
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
      if (row.group_id && row.status === "pending" && outcome === "counted" && !data.seq) {
        return {
          kind: "invalid",
          messageId: row.id,
          reason: "a counted group message needs a seq",
        };
      }
      const decision = decideOn(row, { type: "reply", outcome, reason, timeoutMs }, finished);
      if ("ignored" in decision) return { kind: "ignored", status: row.status, messageId: row.id };
      if (decision.status === "committed" && row.group_id) row.seq = data.seq!;
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
  recipient_id: string | null;
  group_id: string | null;
  /** Set when a reply commits a group message. */
  seq: number | null;
  request_id: string | null;
}

const SAGA_COLUMNS = "id, transaction_id, status, created_at, sender_id, recipient_id, group_id, " +
  "seq::float8 as seq, request_id";

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

/**
 * The statements that write the finished messages, their groups' last_committed_seq and their
 * cancels (for withCommit).
 */
function writeFinished(tx: Tx, finished: Finished[]): PromiseLike<unknown>[] {
  if (finished.length === 0) return [];
  const cancels = finished.filter((f) => f.cancel).map((f) => cancelEvent(f.row));
  const statements: PromiseLike<unknown>[] = [
    tx`
      update messages m
      set status = u.status, finished_at = now(), failure_reason = u.reason,
          seq = coalesce(u.seq, m.seq)
      from unnest(${finished.map((f) => f.row.id)}::uuid[], ${
      finished.map((f) => f.status)
    }::text[],
                  ${finished.map((f) => f.reason)}::text[], ${
      finished.map((f) => f.row.seq)
    }::bigint[]) as u(id, status, reason, seq)
      where m.id = u.id`,
    enqueueEvents(tx, cancels),
  ];
  const committed = finished.filter((f) => f.status === "committed" && f.row.group_id);
  if (committed.length > 0) statements.push(raiseLastCommittedSeq(tx, committed));
  return statements;
}

/**
 * Moves each group's last_committed_seq up to its newest committed seq. The group rows are locked
 * in id order first, so batches touching several groups cannot deadlock; the lock serialises with
 * joins (addMembers), so a joining member's joinedSeq covers every message committed before.
 */
function raiseLastCommittedSeq(tx: Tx, committed: Finished[]): PromiseLike<unknown> {
  return tx`
    with u as (
      select g as group_id, max(s) as seq
      from unnest(${committed.map((f) => f.row.group_id!)}::uuid[], ${
    committed.map((f) => f.row.seq!)
  }::bigint[]) as x(g, s)
      group by g
    ), locked as (
      select id from groups where id in (select group_id from u) order by id for update
    )
    update groups g set last_committed_seq = greatest(g.last_committed_seq, u.seq)
    from u join locked l on l.id = u.group_id
    where g.id = u.group_id`;
}

/** The cancel of a send that timed out: counters takes its count back, or never counts it. */
function cancelEvent(row: SagaRow): Envelope {
  const requestId = row.request_id ?? undefined;
  if (row.group_id) {
    return createEvent("dialogs.group.message.cancelled", {
      transactionId: row.transaction_id,
      messageId: row.id,
      groupId: row.group_id,
      senderId: row.sender_id,
      reason: TIMEOUT_REASON,
    }, { requestId });
  }
  return createEvent("dialogs.message.cancelled", {
    transactionId: row.transaction_id,
    messageId: row.id,
    senderId: row.sender_id,
    recipientId: row.recipient_id!,
    reason: TIMEOUT_REASON,
  }, { requestId });
}

/** A delete of a message by `userId`. */
export interface DeleteInput {
  userId: string;
  messageId: string;
  requestId?: string;
}

/**
 * What a delete did: `deleted` (now or before), `not_found` (no message of the caller's),
 * `conflict` (still pending, or failed).
 */
export type DeleteResult = "deleted" | "not_found" | "conflict";

/**
 * The sender deletes its committed message: status 'deleted', and in the same transaction
 * dialogs.message.deleted when a dialog's recipient had not read it (its count drops by one), or
 * dialogs.group.message.deleted with its seq. The row is locked, so a concurrent read of the
 * dialog either reads it first (no event) or skips it.
 */
export async function deleteMessage(sql: Sql, input: DeleteInput): Promise<DeleteResult> {
  return await outboxTransaction(sql, async (tx, withCommit): Promise<DeleteResult> => {
    const [row] = await tx<(MessageRow & { request_id: string | null })[]>`
      select ${tx.unsafe(COLUMNS)} from messages
      where id = ${input.messageId} and sender_id = ${input.userId}
      for update`;
    if (!row) return "not_found";
    if (row.status === "deleted") return "deleted";
    if (row.status !== "committed") return "conflict";
    const [{ deleted_at }] = await tx<[{ deleted_at: Date }]>`
      update messages set status = 'deleted', deleted_at = now() where id = ${row.id}
      returning deleted_at`;
    const event = deletedEvent(row, deleted_at, input.requestId);
    if (event) withCommit(enqueueEvent(tx, event));
    return "deleted";
  });
}

/** The event of a delete, if counters must hear of it (not for a dialog message already read). */
function deletedEvent(row: MessageRow, deletedAt: Date, requestId?: string): Envelope | undefined {
  if (row.group_id) {
    return createEvent("dialogs.group.message.deleted", {
      messageId: row.id,
      groupId: row.group_id,
      senderId: row.sender_id,
      seq: row.seq!,
      deletedAt: deletedAt.toISOString(),
    }, { requestId });
  }
  if (row.read_at !== null) return undefined;
  return createEvent("dialogs.message.deleted", {
    transactionId: crypto.randomUUID(),
    messageId: row.id,
    senderId: row.sender_id,
    recipientId: row.recipient_id!,
    deletedAt: deletedAt.toISOString(),
  }, { requestId });
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
  recipient_id: string | null;
  group_id: string | null;
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

/**
 * How old a pending dialog message, and its last republish, must be before republishStaleSends
 * publishes its event again: the outbox's lease, the time a relay has for a handed-over event.
 */
export const REPUBLISH_AFTER_MS = 2_000;

/**
 * Publishes again the "message sent" events of pending dialog messages older than `afterMs` whose
 * last republish is older than that too (the process may have died between the commit and the
 * publish, or NATS or the relay failed), oldest first, at most `limit`, in one transaction. The
 * gap between two republishes of a message grows with its age at the last one, up to 4 × `afterMs`
 * (republished at 2, 4, 8, 16, 24 s of age…): a saga that is slow because counters is (its event
 * did get out) costs a few republishes, not one every 2 s, and one whose publish failed goes out
 * at most 8 s after NATS is back. The
 * rows are locked with SKIP LOCKED, so instances sweeping at once take different ones, and their
 * republished_at is set with the COMMIT, after which this process's relay publishes the events
 * (same id as the first publish: a repeat within JetStream's duplicate window is dropped, a later
 * one is absorbed by counters' ledger). Without a healthy relay in this process it changes nothing
 * and returns 0, leaving the messages to an instance with one. Returns how many it republished.
 * The republished event carries the stored request id and no trace.
 */
export async function republishStaleSends(
  sql: Sql,
  afterMs = REPUBLISH_AFTER_MS,
  limit = SWEEP_BATCH_SIZE,
): Promise<number> {
  return await outboxTransaction(sql, async (tx, withCommit) => {
    // messages_pending finds the candidates; few are older than afterMs.
    const rows = await tx<
      (Pick<MessageRow, "id" | "transaction_id" | "sender_id" | "recipient_id" | "created_at"> & {
        request_id: string | null;
      })[]
    >`
      select id, transaction_id, sender_id, recipient_id, created_at, request_id
      from messages
      where status = 'pending' and group_id is null
        and created_at < now() - make_interval(secs => ${afterMs / 1000})
        and (republished_at is null
             or republished_at < now() - greatest(
               make_interval(secs => ${afterMs / 1000}),
               least(republished_at - created_at, make_interval(secs => ${4 * afterMs / 1000}))))
      order by created_at
      limit ${limit}
      for update skip locked`;
    if (rows.length === 0) return 0;
    const events = rows.map((row) => sentEvent(row, row.request_id, null));
    if (!publishAfterCommit(tx, events)) return 0;
    withCommit(tx`
      update messages set republished_at = now() where id = any(${rows.map((r) => r.id)}::uuid[])`);
    return rows.length;
  });
}

/**
 * One republish tick: republishStaleSends batch after batch while a batch comes back full.
 * Returns how many it republished.
 */
export async function sweepStaleSends(
  sql: Sql,
  options: { afterMs?: number; batchSize?: number } = {},
): Promise<number> {
  const batchSize = options.batchSize ?? SWEEP_BATCH_SIZE;
  let total = 0;
  while (true) {
    const n = await republishStaleSends(sql, options.afterMs ?? REPUBLISH_AFTER_MS, batchSize);
    total += n;
    if (n < batchSize) return total;
  }
}
