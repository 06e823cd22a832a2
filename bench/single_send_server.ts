/**
 * Baseline (e) of the bench (issue 15): the same send as dialogs' `POST /api/dialog/{peerId}/send`,
 * done the way a good single service without a saga would do it, in one Deno + Hono process. The
 * token is verified once and remembered, the body is validated with zod, and one pipelined
 * transaction (BEGIN, the three statements and COMMIT in one round trip) inserts the message, bumps
 * the recipient's unread counter and the recipient's counters version; the answer is 202 with the
 * message, already counted. Its tables live in its own database (`DATABASE_URL`), made at start.
 * No saga, no outbox, no broker, no cache, no log line or metric per request.
 */
import { Hono } from "hono";
import { z } from "zod";
import { bearerToken, createVerifiedTokens } from "../shared/auth.ts";
import { openDatabase, pipelinedTransaction, type Sql } from "../shared/db.ts";
import { HEADERS } from "../shared/events.ts";
import { requestIdFor } from "../shared/http/request_id.ts";

/** Longest message text, in characters, as in dialogs. */
const MAX_TEXT_CHARS = 4096;

const SendBody = z.object({
  text: z.string().refine((t) => t.trim().length > 0 && [...t].length <= MAX_TEXT_CHARS, {
    message: `text must be 1 to ${MAX_TEXT_CHARS} characters, not only spaces`,
  }),
});
const PeerId = z.uuid();

/** Creates (e)'s three tables in `sql`'s database if they are missing. */
export async function prepareSingleSend(sql: Sql): Promise<void> {
  await sql`create table if not exists messages (
    id uuid primary key, sender_id uuid not null, recipient_id uuid not null, text text not null,
    idempotency_key text, created_at timestamptz not null default now())`;
  await sql`create unique index if not exists messages_idempotency
    on messages (sender_id, idempotency_key) where idempotency_key is not null`;
  await sql`create table if not exists unread_counters (
    user_id uuid not null, peer_id uuid not null, unread int not null,
    primary key (user_id, peer_id))`;
  await sql`create table if not exists counter_versions (
    user_id uuid primary key, version bigint not null)`;
}

/**
 * Commits the message, the recipient's counter and its version in one pipelined transaction and
 * returns the message's id; a send retried with its Idempotency-Key returns the first one's.
 */
export async function sendInOneTransaction(
  sql: Sql,
  send: { senderId: string; recipientId: string; text: string; key: string | null },
): Promise<string> {
  const { senderId, recipientId, text, key } = send;
  const id = crypto.randomUUID();
  try {
    return await pipelinedTransaction(sql, function statements(tx, withCommit) {
      withCommit(tx`
        insert into messages (id, sender_id, recipient_id, text, idempotency_key)
        values (${id}, ${senderId}, ${recipientId}, ${text}, ${key})`);
      withCommit(tx`
        insert into unread_counters (user_id, peer_id, unread) values (${recipientId}, ${senderId}, 1)
        on conflict (user_id, peer_id) do update set unread = unread_counters.unread + 1`);
      withCommit(tx`
        insert into counter_versions (user_id, version) values (${recipientId}, 1)
        on conflict (user_id) do update set version = counter_versions.version + 1`);
      return Promise.resolve(id);
    });
  } catch (err) {
    if ((err as { code?: string }).code !== "23505" || key === null) throw err;
    const [first] = await sql<{ id: string }[]>`
      select id from messages where sender_id = ${senderId} and idempotency_key = ${key}`;
    return first!.id;
  }
}

/** The (e) send as a Hono app over `sql`, verifying tokens signed with `secret`. */
export function singleSendApp(sql: Sql, secret: string): Hono {
  const tokens = createVerifiedTokens(secret);
  const app = new Hono();
  app.post("/api/dialog/:peerId/send", async (c) => {
    const requestId = requestIdFor(c.req.header(HEADERS.requestId));
    c.header(HEADERS.requestId, requestId);
    const token = bearerToken(c.req.header("Authorization") ?? "");
    if (!token) return c.json({ title: "a bearer token is required" }, 401);
    let senderId: string;
    try {
      senderId = tokens.userIdOf(token) ?? await tokens.verify(token);
    } catch {
      return c.json({ title: "the token is invalid" }, 401);
    }
    const peer = PeerId.safeParse(c.req.param("peerId"));
    const body = SendBody.safeParse(await c.req.json().catch(() => undefined));
    if (!peer.success || !body.success) return c.json({ title: "invalid send" }, 400);
    const recipientId = peer.data.toLowerCase();
    if (recipientId === senderId) return c.json({ title: "a message to oneself" }, 400);
    const key = c.req.header("Idempotency-Key") ?? null;
    const messageId = await sendInOneTransaction(sql, {
      senderId,
      recipientId,
      text: body.data.text,
      key,
    });
    return c.json({ messageId, status: "committed" }, 202);
  });
  return app;
}

if (import.meta.main) {
  const sql = openDatabase(Deno.env.get("DATABASE_URL") ?? "");
  await prepareSingleSend(sql);
  const app = singleSendApp(sql, Deno.env.get("JWT_SECRET") ?? "");
  const port = Number(Deno.env.get("PORT") ?? 8093);
  Deno.serve({ port, hostname: "127.0.0.1", onListen: () => {} }, app.fetch);
  // Exits on SIGTERM, so a CPU profile (`--cpu-prof`, bench/cpu_stages.ts) is written.
  Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
}
