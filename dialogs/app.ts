/** The dialogs HTTP API: send a message, read its status, list a dialog and the caller's dialogs. */
import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { bearerAuth, createVerifiedTokens } from "../shared/auth.ts";
import { AppError, badRequest, notFound } from "../shared/errors.ts";
import type { AppEnv } from "../shared/http/app_env.ts";
import { COMMON_PROBLEMS, problemDoc } from "../shared/openapi.ts";
import type { MessageStore } from "./message_store.ts";
import { canSee, type MessageRow, toMessageView } from "./messages.ts";
import {
  Before,
  DialogList,
  IdempotencyHeader,
  Limit,
  MarkRead,
  MessageList,
  MessageParam,
  MessageView,
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
  summary: "One message: for its sender always, for its recipient once committed",
  security: [{ bearer: [] }],
  request: {
    params: MessageParam,
  },
  responses: {
    200: { description: "The message", content: { "application/json": { schema: MessageView } } },
    ...COMMON_PROBLEMS,
    404: problemDoc("No such message for the caller"),
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
  summary: "The caller's dialogs with their last message, most recent activity first",
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
  if (!row || !canSee(row, userId) || (row.sender_id !== peerId && row.recipient_id !== peerId)) {
    throw notFound(`no message ${id} in this dialog`);
  }
  return row;
}

/** Mounts the dialogs routes on `app`. */
export function mountDialogsRoutes(app: OpenAPIHono<AppEnv>, deps: DialogsRoutesDeps): void {
  const { store } = deps;
  app.use("/api/*", bearerAuth({ tokens: createVerifiedTokens(deps.jwtSecret) }));

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
    if (!created && (message.recipient_id !== peerId || message.text !== text)) {
      throw new AppError(
        422,
        "idempotency-key-reused",
        "this Idempotency-Key was used for a different message",
      );
    }
    return c.json({
      messageId: message.id,
      transactionId: message.transaction_id,
      status: message.status,
    }, 202);
  });

  app.openapi(messageRoute, async (c) => {
    const { messageId } = c.req.valid("param");
    const row = await store.findMessage(messageId);
    if (!row || !canSee(row, c.get("userId"))) throw notFound(`no message ${messageId}`);
    return c.json(toMessageView(row), 200);
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
    const dialogs = await store.listDialogs(c.get("userId"), limit);
    return c.json({
      dialogs: dialogs.map((d) => ({
        peerId: d.peerId,
        lastMessage: toMessageView(d.lastMessage),
      })),
    }, 200);
  });
}
