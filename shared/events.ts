/** Saga events: the envelope, one zod schema per event type, and the subjects they travel on. */
import { z } from "zod";
import { currentTraceparent } from "./tracing.ts";

/** dialogs → counters: a message was stored as pending and must be counted for its recipient. */
export const MessageSent = z.object({
  transactionId: z.uuid(),
  messageId: z.uuid(),
  senderId: z.uuid(),
  recipientId: z.uuid(),
  sentAt: z.iso.datetime({ offset: true }),
});

/** counters → dialogs: the outcome of counting a sent message; a counted group message has a `seq`. */
export const MessageCounted = z.object({
  transactionId: z.uuid(),
  messageId: z.uuid(),
  outcome: z.enum(["counted", "failed"]),
  reason: z.string().max(500).optional(),
  seq: z.number().int().positive().optional(),
});

/**
 * dialogs → counters: a group message was stored as pending and must be counted (given the next
 * `seq` of its group). `mentions` names members other than the sender, each once, and is empty
 * when `mentionsAll` (which covers every member) is set.
 */
export const GroupMessageSent = z.object({
  transactionId: z.uuid(),
  messageId: z.uuid(),
  groupId: z.uuid(),
  senderId: z.uuid(),
  mentions: z.array(z.uuid()).max(10_000),
  mentionsAll: z.boolean(),
  sentAt: z.iso.datetime({ offset: true }),
});

/** dialogs → counters: a pending group send timed out and was failed; its seq, if any, is void. */
export const GroupMessageCancelled = z.object({
  transactionId: z.uuid(),
  messageId: z.uuid(),
  groupId: z.uuid(),
  senderId: z.uuid(),
  reason: z.string().max(500),
});

/**
 * dialogs → counters: the sender deleted a committed dialog message the recipient had not read;
 * the recipient's count drops by one, once (the transaction is the delete's own).
 */
export const MessageDeleted = z.object({
  transactionId: z.uuid(),
  messageId: z.uuid(),
  senderId: z.uuid(),
  recipientId: z.uuid(),
  deletedAt: z.iso.datetime({ offset: true }),
});

/** dialogs → counters: the sender deleted a committed group message; `seq` is its place. */
export const GroupMessageDeleted = z.object({
  messageId: z.uuid(),
  groupId: z.uuid(),
  senderId: z.uuid(),
  seq: z.number().int().positive(),
  deletedAt: z.iso.datetime({ offset: true }),
});

/**
 * One member's state in a group as dialogs holds it. `version` goes up with every change of this
 * (group, user) pair, so counters keeps the newest whatever order events arrive in.
 */
export const MemberState = z.object({
  userId: z.uuid(),
  member: z.boolean(),
  joinedSeq: z.number().int().min(0),
  readSeq: z.number().int().min(0),
  muted: z.boolean(),
  version: z.number().int().positive(),
});

/** dialogs → counters: members joined, left, read or muted a group (at most 1,000 per event). */
export const GroupMembersChanged = z.object({
  groupId: z.uuid(),
  members: z.array(MemberState).min(1).max(1_000),
});

/** dialogs → counters: a user muted or unmuted a dialog; `version` as for MemberState. */
export const DialogMuted = z.object({
  userId: z.uuid(),
  peerId: z.uuid(),
  muted: z.boolean(),
  version: z.number().int().positive(),
});

/** dialogs → counters: a pending send timed out and was failed; undo its increment if counted. */
export const MessageCancelled = z.object({
  transactionId: z.uuid(),
  messageId: z.uuid(),
  senderId: z.uuid(),
  recipientId: z.uuid(),
  reason: z.string().max(500),
});

/** dialogs → counters: the reader read `count` committed messages from the peer. */
export const MessagesRead = z.object({
  transactionId: z.uuid(),
  readerId: z.uuid(),
  peerId: z.uuid(),
  count: z.number().int().min(1),
  readAt: z.iso.datetime({ offset: true }),
});

/** Every event type with the schema of its `data`. */
export const EVENT_SCHEMAS = {
  "dialogs.message.sent": MessageSent,
  "dialogs.message.cancelled": MessageCancelled,
  "dialogs.messages.read": MessagesRead,
  "dialogs.message.deleted": MessageDeleted,
  "dialogs.dialog.muted": DialogMuted,
  "dialogs.group.message.sent": GroupMessageSent,
  "dialogs.group.message.cancelled": GroupMessageCancelled,
  "dialogs.group.message.deleted": GroupMessageDeleted,
  "dialogs.group.members.changed": GroupMembersChanged,
  "counters.message.counted": MessageCounted,
} as const;

/** The name of an event type, e.g. `dialogs.message.sent`. */
export type EventType = keyof typeof EVENT_SCHEMAS;

/** The `data` of an event of type `T`. */
export type EventData<T extends EventType> = z.infer<(typeof EVENT_SCHEMAS)[T]>;

/**
 * An event as it travels: id (also the JetStream msgID), type, time, request id, the trace it
 * belongs to (a W3C `traceparent`, with tracing on) and data.
 */
export type Envelope<T extends EventType = EventType> = {
  [K in T]: {
    id: string;
    type: K;
    occurredAt: string;
    requestId?: string;
    traceparent?: string;
    data: EventData<K>;
  };
}[T];

const EnvelopeHeader = z.object({
  id: z.uuid(),
  type: z.enum(Object.keys(EVENT_SCHEMAS) as [EventType, ...EventType[]]),
  occurredAt: z.iso.datetime({ offset: true }),
  requestId: z.string().max(255).optional(),
  // A malformed one only loses the trace, never the event.
  traceparent: z.string().regex(/^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/).optional()
    .catch(undefined),
  data: z.unknown(),
});

/** Why an incoming message can never be processed. */
export class InvalidEventError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "InvalidEventError";
  }
}

/** Builds an envelope with a fresh id. */
export function createEvent<T extends EventType>(
  type: T,
  data: EventData<T>,
  options: { requestId?: string; id?: string; now?: Date; traceparent?: string | null } = {},
): Envelope<T> {
  // The trace it continues: given (a batch's item), else the active span's (null when off).
  const traceparent = options.traceparent === undefined
    ? currentTraceparent()
    : options.traceparent;
  return {
    id: options.id ?? crypto.randomUUID(),
    type,
    occurredAt: (options.now ?? new Date()).toISOString(),
    ...(options.requestId ? { requestId: options.requestId } : {}),
    ...(traceparent ? { traceparent } : {}),
    data,
  } as Envelope<T>;
}

/** Parses and validates raw message bytes; throws InvalidEventError when they are not an event. */
export function parseEvent(bytes: Uint8Array): Envelope {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(bytes));
  } catch (cause) {
    throw new InvalidEventError("message is not valid JSON", { cause });
  }
  const header = EnvelopeHeader.safeParse(json);
  if (!header.success) throw new InvalidEventError(describe(header.error));
  const data = EVENT_SCHEMAS[header.data.type].safeParse(header.data.data);
  if (!data.success) {
    throw new InvalidEventError(`${header.data.type}: ${describe(data.error)}`);
  }
  return { ...header.data, data: data.data } as Envelope;
}

function describe(error: z.ZodError): string {
  return error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`).join("; ");
}

/** The subject an event of `type` is published on. */
export function subjectFor(prefix: string, type: EventType): string {
  return `${prefix}.${type}`;
}

/** The subjects of every event one service publishes (`dialogs` or `counters`). */
export function subjectsFrom(prefix: string, source: "dialogs" | "counters"): string {
  return `${prefix}.${source}.>`;
}

/** The subject a dead letter of `subject` is kept on. */
export function deadLetterSubject(prefix: string, subject: string): string {
  const rest = subject.startsWith(`${prefix}.`) ? subject.slice(prefix.length + 1) : subject;
  return `${prefix}_dlq.${rest}`;
}

/** Header names the saga's messages carry. */
export const HEADERS = {
  requestId: "X-Request-ID",
  eventType: "Event-Type",
  deadLetterReason: "Dead-Letter-Reason",
  deadLetterSubject: "Dead-Letter-Subject",
  deadLetterStream: "Dead-Letter-Stream",
  deadLetterSequence: "Dead-Letter-Sequence",
} as const;
