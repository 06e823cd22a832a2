/** The dialogs HTTP API: send a message, read its status, list a dialog and the caller's dialogs. */
import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { bearerAuth, createVerifiedTokens } from "../shared/auth.ts";
import type { Sql } from "../shared/db.ts";
import { AppError, badRequest, notFound } from "../shared/errors.ts";
import type { AppEnv } from "../shared/http/app_env.ts";
import { ProblemSchema } from "../shared/openapi.ts";
import {
  findMessage,
  listDialog,
  listDialogs,
  markMessagesRead,
  sendMessage,
} from "./message_store.ts";
import { canSee, type MessageRow, toMessageView } from "./messages.ts";

/** What the dialogs routes need. */
export interface DialogsRoutesDeps {
  sql: Sql;
  jwtSecret: string;
}

/** Longest message text, in characters (code points). */
export const MAX_TEXT_CHARS = 4096;

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

const SendBody = z.object({ text: MessageText }).openapi("SendMessage");

const SendAccepted = z.object({
  messageId: z.uuid(),
  transactionId: z.uuid(),
  status: z.enum(["pending", "committed", "failed"]),
}).openapi("SendAccepted");

const Message = z.object({
  id: z.uuid(),
  from: z.uuid(),
  to: z.uuid(),
  text: z.string(),
  status: z.enum(["pending", "committed", "failed"]),
  createdAt: z.string(),
  readAt: z.string().nullable(),
}).openapi("Message");

const PeerParam = z.object({
  peerId: z.uuid().openapi({ param: { name: "peerId", in: "path" } }),
});

const Limit = z.coerce.number().int().min(1).max(200).default(50).openapi({
  param: { name: "limit", in: "query" },
});

const IdempotencyHeader = z.object({
  "idempotency-key": z.string().min(1).max(255).regex(
    /^[\x21-\x7E]+$/,
    "must be printable ASCII without spaces",
  ).optional().openapi({ param: { name: "idempotency-key", in: "header" } }),
});

const problemContent = { "application/problem+json": { schema: ProblemSchema } };
const errors = {
  400: { description: "Invalid input", content: problemContent },
  401: { description: "Missing or invalid token", content: problemContent },
};

const sendRoute = createRoute({
  method: "post",
  path: "/api/dialog/{peerId}/send",
  summary: "Send a message to a peer; it stays pending until counters has counted it",
  security: [{ bearer: [] }],
  request: {
    params: PeerParam,
    headers: IdempotencyHeader,
    body: { required: true, content: { "application/json": { schema: SendBody } } },
  },
  responses: {
    202: { description: "Accepted", content: { "application/json": { schema: SendAccepted } } },
    ...errors,
    413: { description: "Body over 64 KiB", content: problemContent },
    422: { description: "Idempotency-Key reused for another request", content: problemContent },
  },
});

const messageRoute = createRoute({
  method: "get",
  path: "/api/messages/{messageId}",
  summary: "One message: for its sender always, for its recipient once committed",
  security: [{ bearer: [] }],
  request: {
    params: z.object({
      messageId: z.uuid().openapi({ param: { name: "messageId", in: "path" } }),
    }),
  },
  responses: {
    200: { description: "The message", content: { "application/json": { schema: Message } } },
    ...errors,
    404: { description: "No such message for the caller", content: problemContent },
  },
});

const listRoute = createRoute({
  method: "get",
  path: "/api/dialog/{peerId}/list",
  summary: "The dialog with a peer, newest first",
  security: [{ bearer: [] }],
  request: {
    params: PeerParam,
    query: z.object({
      limit: Limit,
      before: z.uuid().optional().openapi({ param: { name: "before", in: "query" } }),
    }),
  },
  responses: {
    200: {
      description: "Messages",
      content: { "application/json": { schema: z.object({ messages: z.array(Message) }) } },
    },
    ...errors,
    404: { description: "`before` names no message of this dialog", content: problemContent },
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
      content: {
        "application/json": {
          schema: z.object({
            dialogs: z.array(z.object({ peerId: z.uuid(), lastMessage: Message })),
          }),
        },
      },
    },
    ...errors,
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
      content: {
        "application/json": {
          schema: z.object({ upTo: z.uuid().optional() }).openapi("MarkRead"),
        },
      },
    },
  },
  responses: {
    200: {
      description: "How many messages this call marked read",
      content: { "application/json": { schema: z.object({ read: z.number().int() }) } },
    },
    ...errors,
    404: { description: "`upTo` names no message of this dialog", content: problemContent },
  },
});

/** The message `id` if `userId` may see it in the dialog with `peerId`; 404 otherwise. */
async function messageInDialog(
  sql: Sql,
  userId: string,
  peerId: string,
  id: string,
): Promise<MessageRow> {
  const row = await findMessage(sql, id);
  if (!row || !canSee(row, userId) || (row.sender_id !== peerId && row.recipient_id !== peerId)) {
    throw notFound(`no message ${id} in this dialog`);
  }
  return row;
}

/** Mounts the dialogs routes on `app`. */
export function mountDialogsRoutes(app: OpenAPIHono<AppEnv>, deps: DialogsRoutesDeps): void {
  const { sql } = deps;
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
    const { message, created } = await sendMessage(sql, {
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
    const row = await findMessage(sql, messageId);
    if (!row || !canSee(row, c.get("userId"))) throw notFound(`no message ${messageId}`);
    return c.json(toMessageView(row), 200);
  });

  app.openapi(listRoute, async (c) => {
    const userId = c.get("userId");
    const peerId = c.req.valid("param").peerId.toLowerCase();
    const { limit, before } = c.req.valid("query");
    const cursor = before ? await messageInDialog(sql, userId, peerId, before) : undefined;
    const rows = await listDialog(sql, userId, peerId, { limit, before: cursor });
    return c.json({ messages: rows.map(toMessageView) }, 200);
  });

  app.openapi(readRoute, async (c) => {
    const userId = c.get("userId");
    const peerId = c.req.valid("param").peerId.toLowerCase();
    const { upTo } = c.req.valid("json");
    const cursor = upTo ? await messageInDialog(sql, userId, peerId, upTo) : undefined;
    const result = await markMessagesRead(sql, {
      readerId: userId,
      peerId,
      upTo: cursor,
      requestId: c.get("requestId"),
    });
    return c.json({ read: result.read }, 200);
  });

  app.openapi(dialogsRoute, async (c) => {
    const { limit } = c.req.valid("query");
    const dialogs = await listDialogs(sql, c.get("userId"), limit);
    return c.json({
      dialogs: dialogs.map((d) => ({
        peerId: d.peerId,
        lastMessage: toMessageView(d.lastMessage),
      })),
    }, 200);
  });
}
