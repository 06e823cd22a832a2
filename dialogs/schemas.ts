/**
 * The dialogs API's shapes, once each: the zod schemas validate requests and describe the OpenAPI
 * document, and the types the code and the web page use are inferred from them.
 */
import { z } from "@hono/zod-openapi";

/** Longest message text, in characters (code points). */
const MAX_TEXT_CHARS = 4096;

/** Where a message is in its send saga. */
export const MessageStatus = z.enum(["pending", "committed", "failed"]);
/** Where a message is in its send saga. */
export type MessageStatus = z.infer<typeof MessageStatus>;

/** A message as the API returns it. */
export const MessageView = z.object({
  id: z.uuid(),
  from: z.uuid(),
  to: z.uuid(),
  text: z.string(),
  status: MessageStatus,
  createdAt: z.string(),
  readAt: z.string().nullable(),
}).openapi("Message");
/** A message as the API returns it. */
export type MessageView = z.infer<typeof MessageView>;

const MessageText = z.string().superRefine((text, ctx) => {
  if (text.trim().length === 0) ctx.addIssue({ code: "custom", message: "text must not be empty" });
  else if ([...text].length > MAX_TEXT_CHARS) {
    ctx.addIssue({ code: "custom", message: `text must be at most ${MAX_TEXT_CHARS} characters` });
  } else if (!text.isWellFormed()) {
    // A lone surrogate cannot be stored as UTF-8; it would come back changed.
    ctx.addIssue({ code: "custom", message: "text must be valid Unicode (no lone surrogates)" });
  } else if (text.includes("\u0000")) {
    ctx.addIssue({ code: "custom", message: "text must not contain NUL characters" });
  }
}).openapi({ example: "Hello!" });

/** The body of a send. */
export const SendMessage = z.object({ text: MessageText }).openapi("SendMessage");

/** The answer to a send: the message, its saga's transaction and where it is. */
export const SendAccepted = z.object({
  messageId: z.uuid(),
  transactionId: z.uuid(),
  status: MessageStatus,
}).openapi("SendAccepted");
/** The answer to a send: the message, its saga's transaction and where it is. */
export type SendAccepted = z.infer<typeof SendAccepted>;

/** A page of one dialog, newest first. */
export const MessageList = z.object({ messages: z.array(MessageView) });
/** A page of one dialog, newest first. */
export type MessageList = z.infer<typeof MessageList>;

/** The caller's dialogs, each with its last message. */
export const DialogList = z.object({
  dialogs: z.array(z.object({ peerId: z.uuid(), lastMessage: MessageView })),
});
/** The caller's dialogs, each with its last message. */
export type DialogList = z.infer<typeof DialogList>;

/** The body of a mark-read: up to which message (everything without it). */
export const MarkRead = z.object({ upTo: z.uuid().optional() }).openapi("MarkRead");

/** The answer to a mark-read: how many messages this call marked read. */
export const ReadCount = z.object({ read: z.number().int() });

/** The `{peerId}` path parameter. */
export const PeerParam = z.object({
  peerId: z.uuid().openapi({ param: { name: "peerId", in: "path" } }),
});

/** The `{messageId}` path parameter. */
export const MessageParam = z.object({
  messageId: z.uuid().openapi({ param: { name: "messageId", in: "path" } }),
});

/** The `limit` query parameter of the lists. */
export const Limit = z.coerce.number().int().min(1).max(200).default(50).openapi({
  param: { name: "limit", in: "query" },
});

/** The `before` query parameter of a dialog's list: the cursor of the next page. */
export const Before = z.uuid().optional().openapi({ param: { name: "before", in: "query" } });

/** The optional Idempotency-Key header of a send. */
export const IdempotencyHeader = z.object({
  "idempotency-key": z.string().min(1).max(255).regex(
    /^[\x21-\x7E]+$/,
    "must be printable ASCII without spaces",
  ).optional().openapi({ param: { name: "idempotency-key", in: "header" } }),
});
