/**
 * The dialogs HTTP API: send a message, read its status, list a dialog and the caller's dialogs and
 * groups, read, delete, mute; the group routes are in group_routes.ts.
 */
import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { bearerAuth, createVerifiedTokens } from "../shared/auth.ts";
import { AppError, badRequest, notFound } from "../shared/errors.ts";
import { mountGroupRoutes } from "./group_routes.ts";
import type { AppEnv } from "../shared/http/app_env.ts";
import { COMMON_PROBLEMS, problemDoc } from "../shared/openapi.ts";
import type { MessageStore } from "./message_store.ts";
import {
  canSee,
  type MessageRow,
  sendAnswer,
  toAnyMessageView,
  toGroupMessageView,
  toMessageView,
} from "./messages.ts";
import {
  AnyMessageView,
  Before,
  Deleted,
  DialogList,
  IdempotencyHeader,
  Limit,
  MarkRead,
  MessageList,
  MessageParam,
  Mute,
  PeerParam,
  ReadCount,
  SendAccepted,
  SendMessage,
} from "./schemas.ts";

/** What the dialogs routes need. */
export interface DialogsRoutesDeps {
  /** The stored messages: postgresMessageStore(sql) in the service. */
  store: MessageStore;
  jwtSecret: string;
  /** Most members a group may have, counting its owner (MAX_GROUP_MEMBERS; 10000 unless told). */
  maxGroupMembers?: number;
}

const sendRoute = createRoute({
  method: "post",
  path: "/api/dialog/{peerId}/send",
  summary: "Send a message to a peer; it stays pending until counters has counted it",
  security: [{ bearer: [] }],
  request: {
    params: PeerParam,
    headers: IdempotencyHeader,
    body: { required: true, content: { "application/json": { schema: SendMessage } } },
  },
  responses: {
    202: { description: "Accepted", content: { "application/json": { schema: SendAccepted } } },
    ...COMMON_PROBLEMS,
    413: problemDoc("Body over 64 KiB"),
    422: problemDoc("Idempotency-Key reused for another request"),
  },
});

const messageRoute = createRoute({
  method: "get",
  path: "/api/messages/{messageId}",
  summary: "One message: for its sender always (also deleted), for its recipient or the group's " +
    "members once committed",
  security: [{ bearer: [] }],
  request: {
    params: MessageParam,
  },
  responses: {
    200: {
      description: "The message",
      content: { "application/json": { schema: AnyMessageView } },
    },
    ...COMMON_PROBLEMS,
    404: problemDoc("No such message for the caller"),
  },
});

const deleteRoute = createRoute({
  method: "delete",
  path: "/api/messages/{messageId}",
  summary: "The sender deletes its committed message; it disappears for everyone else",
  security: [{ bearer: [] }],
  request: { params: MessageParam },
  responses: {
    200: { description: "Deleted", content: { "application/json": { schema: Deleted } } },
    ...COMMON_PROBLEMS,
    404: problemDoc("No message of the caller's has this id"),
    409: problemDoc("The message is pending or failed"),
  },
});

const muteDialogRoute = createRoute({
  method: "put",
  path: "/api/dialog/{peerId}/mute",
  summary: "Mute or unmute the dialog with a peer: its unread leave `total`",
  security: [{ bearer: [] }],
  request: {
    params: PeerParam,
    body: { required: true, content: { "application/json": { schema: Mute } } },
  },
  responses: {
    200: { description: "The mute", content: { "application/json": { schema: Mute } } },
    ...COMMON_PROBLEMS,
  },
});

const listRoute = createRoute({
  method: "get",
  path: "/api/dialog/{peerId}/list",
  summary: "The dialog with a peer, newest first",
  security: [{ bearer: [] }],
  request: {
    params: PeerParam,
    query: z.object({ limit: Limit, before: Before }),
  },
  responses: {
    200: {
      description: "Messages",
      content: { "application/json": { schema: MessageList } },
    },
    ...COMMON_PROBLEMS,
    404: problemDoc("`before` names no message of this dialog"),
  },
});

const dialogsRoute = createRoute({
  method: "get",
  path: "/api/dialogs",
  summary: "The caller's dialogs and groups with their last message, most recent activity first",
  security: [{ bearer: [] }],
  request: { query: z.object({ limit: Limit }) },
  responses: {
    200: {
      description: "Dialogs",
      content: { "application/json": { schema: DialogList } },
    },
    ...COMMON_PROBLEMS,
  },
});

const readRoute = createRoute({
  method: "post",
  path: "/api/dialog/{peerId}/read",
  summary: "Mark the peer's committed messages to the caller as read, up to and including `upTo` " +
    "(everything without it); repeating it reads nothing more",
  security: [{ bearer: [] }],
  request: {
    params: PeerParam,
    body: {
      required: false,
      content: { "application/json": { schema: MarkRead } },
    },
  },
  responses: {
    200: {
      description: "How many messages this call marked read",
      content: { "application/json": { schema: ReadCount } },
    },
    ...COMMON_PROBLEMS,
    404: problemDoc("`upTo` names no message of this dialog"),
  },
});

/** The message `id` if `userId` may see it in the dialog with `peerId`; 404 otherwise. */
async function messageInDialog(
  store: MessageStore,
  userId: string,
  peerId: string,
  id: string,
): Promise<MessageRow> {
  const row = await store.findMessage(id);
  if (
    !row || row.group_id || !canSee(row, userId) ||
    (row.sender_id !== peerId && row.recipient_id !== peerId)
  ) {
    throw notFound(`no message ${id} in this dialog`);
  }
  return row;
}

/** The message `id` if `userId` may see it by id (group messages: as a member); 404 otherwise. */
async function visibleMessage(store: MessageStore, userId: string, id: string) {
  const row = await store.findMessage(id);
  const isMember = row?.group_id && row.sender_id !== userId
    ? (await store.findGroup(row.group_id, userId)) !== undefined
    : false;
  if (!row || !canSee(row, userId, isMember)) throw notFound(`no message ${id}`);
  return row;
}

/** The caller's dialogs and groups, most recent activity first, at most `limit`. */
async function conversations(store: MessageStore, userId: string, limit: number) {
  const [dialogs, groups] = await Promise.all([
    store.listDialogs(userId, limit),
    store.listGroupSummaries(userId, limit),
  ]);
  const entries = [
    ...dialogs.map((d) => ({
      at: d.lastMessage.created_at.getTime(),
      entry: { peerId: d.peerId, lastMessage: toMessageView(d.lastMessage) },
    })),
    ...groups.map((g) => ({
      at: g.activeAt.getTime(),
      entry: {
        groupId: g.groupId,
        title: g.title,
        lastMessage: g.lastMessage ? toGroupMessageView(g.lastMessage) : null,
      },
    })),
  ];
  return entries.sort((a, b) => b.at - a.at).slice(0, limit).map((e) => e.entry);
}

/** Mounts the dialogs routes on `app`. */
export function mountDialogsRoutes(app: OpenAPIHono<AppEnv>, deps: DialogsRoutesDeps): void {
  const { store } = deps;
  app.use("/api/*", bearerAuth({ tokens: createVerifiedTokens(deps.jwtSecret) }));
  mountGroupRoutes(app, { store, maxGroupMembers: deps.maxGroupMembers ?? 10_000 });

  app.openapi(sendRoute, async (c) => {
    const userId = c.get("userId");
    const peerId = c.req.valid("param").peerId.toLowerCase();
    const { text } = c.req.valid("json");
    const idempotencyKey = c.req.valid("header")["idempotency-key"];
    if (peerId === userId) {
      throw badRequest("a message to oneself is not allowed", [
        { path: "peerId", message: "must differ from the caller" },
      ]);
    }
    const { message, created } = await store.sendMessage({
      senderId: userId,
      recipientId: peerId,
      text,
      idempotencyKey,
      requestId: c.get("requestId"),
    });
    const sameRequest = created || (message.recipient_id === peerId && message.text === text);
    return c.json(sendAnswer(message, sameRequest), 202);
  });

  app.openapi(messageRoute, async (c) => {
    const { messageId } = c.req.valid("param");
    const row = await visibleMessage(store, c.get("userId"), messageId);
    return c.json(toAnyMessageView(row), 200);
  });

  app.openapi(deleteRoute, async (c) => {
    const { messageId } = c.req.valid("param");
    const result = await store.deleteMessage({
      userId: c.get("userId"),
      messageId,
      requestId: c.get("requestId"),
    });
    if (result === "not_found") throw notFound(`no message ${messageId}`);
    if (result === "conflict") {
      throw new AppError(409, "not-committed", "only a committed message can be deleted");
    }
    return c.json({ id: messageId.toLowerCase(), status: "deleted" as const }, 200);
  });

  app.openapi(muteDialogRoute, async (c) => {
    const userId = c.get("userId");
    const peerId = c.req.valid("param").peerId.toLowerCase();
    const { muted } = c.req.valid("json");
    if (peerId === userId) {
      throw badRequest("there is no dialog with oneself to mute", [
        { path: "peerId", message: "must differ from the caller" },
      ]);
    }
    await store.muteDialog({ userId, targetId: peerId, muted, requestId: c.get("requestId") });
    return c.json({ muted }, 200);
  });

  app.openapi(listRoute, async (c) => {
    const userId = c.get("userId");
    const peerId = c.req.valid("param").peerId.toLowerCase();
    const { limit, before } = c.req.valid("query");
    const cursor = before ? await messageInDialog(store, userId, peerId, before) : undefined;
    const rows = await store.listDialog(userId, peerId, { limit, before: cursor });
    return c.json({ messages: rows.map(toMessageView) }, 200);
  });

  app.openapi(readRoute, async (c) => {
    const userId = c.get("userId");
    const peerId = c.req.valid("param").peerId.toLowerCase();
    const { upTo } = c.req.valid("json");
    const cursor = upTo ? await messageInDialog(store, userId, peerId, upTo) : undefined;
    const result = await store.markMessagesRead({
      readerId: userId,
      peerId,
      upTo: cursor,
      requestId: c.get("requestId"),
    });
    return c.json({ read: result.read }, 200);
  });

  app.openapi(dialogsRoute, async (c) => {
    const { limit } = c.req.valid("query");
    return c.json({ dialogs: await conversations(store, c.get("userId"), limit) }, 200);
  });
}
