/**
 * The dialogs API's shapes, once each: the zod schemas validate requests and describe the OpenAPI
 * document, and the types the code and the web page use are inferred from them.
 */
import { z } from "@hono/zod-openapi";

/** Longest message text, in characters (code points). */
const MAX_TEXT_CHARS = 4096;

/**
 * Where a message is in its send saga; `deleted` is a committed message its sender deleted (only
 * its sender still sees it, by id).
 */
export const MessageStatus = z.enum(["pending", "committed", "failed", "deleted"]);
/** Where a message is in its send saga, or deleted. */
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

/** What a group message mentions: members' ids, or `all` for every member. */
const Mention = z.union([z.uuid(), z.literal("all")]);

/** A group message as the API returns it: `groupId` in place of `to`, its `seq` once committed. */
export const GroupMessageView = z.object({
  id: z.uuid(),
  from: z.uuid(),
  groupId: z.uuid(),
  text: z.string(),
  status: MessageStatus,
  seq: z.number().int().nullable(),
  mentions: z.array(Mention),
  createdAt: z.string(),
}).openapi("GroupMessage");
/** A group message as the API returns it. */
export type GroupMessageView = z.infer<typeof GroupMessageView>;

/** A dialog or a group message. */
export const AnyMessageView = z.union([MessageView, GroupMessageView]);
/** A dialog or a group message. */
export type AnyMessageView = z.infer<typeof AnyMessageView>;

/**
 * Whether `text` has more than `max` characters (code points). A string of at most `max` UTF-16
 * units has at most that many, so only a longer one is counted, without an array of its characters.
 */
export function longerThan(text: string, max: number): boolean {
  if (text.length <= max) return false;
  let chars = 0;
  for (const _ of text) if (++chars > max) return true;
  return false;
}

const MessageText = z.string().superRefine((text, ctx) => {
  if (text.trim().length === 0) ctx.addIssue({ code: "custom", message: "text must not be empty" });
  else if (longerThan(text, MAX_TEXT_CHARS)) {
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

/** A dialog of the caller's list. */
export const DialogEntry = z.object({ peerId: z.uuid(), lastMessage: MessageView });

/** A group of the caller's list; `lastMessage` is null while the group has none the caller sees. */
export const GroupEntry = z.object({
  groupId: z.uuid(),
  title: z.string(),
  lastMessage: GroupMessageView.nullable(),
});

/** The caller's dialogs and groups, each with its last message, most recent activity first. */
export const DialogList = z.object({ dialogs: z.array(z.union([DialogEntry, GroupEntry])) });
/** The caller's dialogs, each with its last message. */
export type DialogList = z.infer<typeof DialogList>;

/** The body of a mark-read: up to which message (everything without it). */
export const MarkRead = z.object({ upTo: z.uuid().optional() }).openapi("MarkRead");

/** The answer to a mark-read: how many messages this call marked read. */
export const ReadCount = z.object({ read: z.number().int() });

/** The answer to a group mark-read: how many it read, and the caller's read position now. */
export const GroupReadCount = z.object({ read: z.number().int(), readSeq: z.number().int() });

/** A group's title: 1 to 200 characters. */
const GroupTitle = z.string().superRefine((title, ctx) => {
  if (title.trim().length === 0) {
    ctx.addIssue({ code: "custom", message: "title must not be empty" });
  } else if (longerThan(title, 200)) {
    ctx.addIssue({ code: "custom", message: "title must be at most 200 characters" });
  } else if (!title.isWellFormed() || title.includes("\u0000")) {
    ctx.addIssue({ code: "custom", message: "title must be valid Unicode without NUL" });
  }
}).openapi({ example: "Team" });

/** Most user ids one request may name (a 64 KiB body holds fewer anyway). */
const MAX_IDS_PER_REQUEST = 10_001;

/** The body of a group creation: its title and its members (the caller joins as owner). */
export const CreateGroup = z.object({
  title: GroupTitle,
  members: z.array(z.uuid()).max(MAX_IDS_PER_REQUEST).default([]),
}).openapi("CreateGroup");

/** A group as the API returns it. */
export const GroupView = z.object({
  id: z.uuid(),
  title: z.string(),
  memberCount: z.number().int(),
  createdAt: z.string(),
}).openapi("Group");

/** A group with the caller's place in it. */
export const GroupWithMe = GroupView.extend({
  me: z.object({
    joinedSeq: z.number().int(),
    readSeq: z.number().int(),
    muted: z.boolean(),
  }),
}).openapi("GroupWithMe");

/** The body of adding members. */
export const AddMembers = z.object({
  userIds: z.array(z.uuid()).min(1).max(MAX_IDS_PER_REQUEST),
}).openapi("AddMembers");

/** The answer to adding members: how many joined (those already in count nothing). */
export const MembersAdded = z.object({ added: z.number().int() });

/** The body of a group send: the text, and whom it mentions (members or `all`). */
export const SendGroupMessage = z.object({
  text: MessageText,
  mentions: z.array(Mention).max(MAX_IDS_PER_REQUEST).default([]),
}).openapi("SendGroupMessage");

/** A page of one group, newest first. */
export const GroupMessageList = z.object({ messages: z.array(GroupMessageView) });

/** The body and answer of a mute. */
export const Mute = z.object({ muted: z.boolean() }).openapi("Mute");

/** The answer to a delete. */
export const Deleted = z.object({ id: z.uuid(), status: z.literal("deleted") });

/** The `{groupId}` path parameter. */
export const GroupParam = z.object({
  groupId: z.uuid().openapi({ param: { name: "groupId", in: "path" } }),
});

/** The `{groupId}` and `{userId}` path parameters of a member. */
export const MemberParam = GroupParam.extend({
  userId: z.uuid().openapi({ param: { name: "userId", in: "path" } }),
});

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
