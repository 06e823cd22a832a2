import assert from "node:assert/strict";
import { signToken } from "../shared/auth.ts";
import { ensureDatabase, openDatabase, quoteIdent } from "../shared/db.ts";
import { testServices } from "../testing/services.ts";
import { prepareSingleSend, singleSendApp } from "./single_send_server.ts";

const SECRET = "bench-test-secret-0123456789abcdef";

Deno.test("(e) commits the message, the recipient's counter and its version before answering 202", async () => {
  const { databaseUrl } = await testServices();
  const name = `t_${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}_single`;
  const url = Object.assign(new URL(databaseUrl), { pathname: `/${name}` }).toString();
  await ensureDatabase(url);
  const sql = openDatabase(url, { max: 2 });
  try {
    await prepareSingleSend(sql);
    await prepareSingleSend(sql); // a restart finds its tables
    const app = singleSendApp(sql, SECRET);
    const [from, to] = [crypto.randomUUID(), crypto.randomUUID()];
    const token = await signToken(from, SECRET);
    const send = (body: string, headers: Record<string, string> = {}, auth = token) =>
      app.request(`/api/dialog/${to}/send`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${auth}`,
          "content-type": "application/json",
          ...headers,
        },
        body,
      });

    const first = await send('{"text":"hello"}');
    assert.equal(first.status, 202);
    assert.ok(first.headers.get("x-request-id"));
    const { messageId, status } = await first.json();
    assert.equal(status, "committed");
    const [message] =
      await sql`select sender_id, recipient_id, text from messages where id = ${messageId}`;
    assert.deepEqual({ ...message }, { sender_id: from, recipient_id: to, text: "hello" });

    // Retried with its Idempotency-Key, a send answers the first message and counts once.
    const keyed = await (await send('{"text":"again"}', { "idempotency-key": "k1" })).json();
    const retried = await send('{"text":"again"}', { "idempotency-key": "k1" });
    assert.equal(retried.status, 202);
    assert.equal((await retried.json()).messageId, keyed.messageId);

    const [counter] = await sql`
      select unread from unread_counters where user_id = ${to} and peer_id = ${from}`;
    const [version] = await sql`select version::int from counter_versions where user_id = ${to}`;
    assert.equal(counter!.unread, 2);
    assert.equal(version!.version, 2);

    // Nothing is stored for a send that is refused.
    assert.equal((await send('{"text":"   "}')).status, 400);
    assert.equal((await send("not json")).status, 400);
    assert.equal((await send('{"text":"x"}', {}, "not-a-token")).status, 401);
    const [{ n }] = await sql`select count(*)::int as n from messages` as unknown as [
      { n: number },
    ];
    assert.equal(n, 2);
  } finally {
    await sql.end();
    const admin = openDatabase(databaseUrl, { max: 1 });
    await admin.unsafe(`drop database if exists ${quoteIdent(name)} with (force)`);
    await admin.end();
  }
});
