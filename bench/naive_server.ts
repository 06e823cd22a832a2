/**
 * The naive alternative the benchmark compares counters with: `GET /api/counters` answered by
 * counting the caller's unread rows in the dialogs database on every request.
 */
import { Hono } from "hono";
import { bearerAuth, createVerifiedTokens } from "../shared/auth.ts";
import { openDatabase } from "../shared/db.ts";

const port = Number(Deno.env.get("PORT") ?? 8091);
const secret = Deno.env.get("JWT_SECRET") ?? "";
const sql = openDatabase(Deno.env.get("DATABASE_URL") ?? "", { max: 8 });

const app = new Hono<{ Variables: { userId: string } }>();
app.use("/api/*", bearerAuth({ tokens: createVerifiedTokens(secret) }));
app.get("/api/counters", async (c) => {
  const rows = await sql<{ peer: string; n: number }[]>`
    select sender_id as peer, count(*)::int as n from messages
    where recipient_id = ${c.get("userId")} and status = 'committed' and read_at is null
    group by sender_id`;
  const dialogs = Object.fromEntries(rows.map((r) => [r.peer, r.n]));
  return c.json({ total: rows.reduce((sum, r) => sum + r.n, 0), dialogs });
});
Deno.serve({ port, hostname: "127.0.0.1", onListen: () => {} }, app.fetch);
