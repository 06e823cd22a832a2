/** The dialogs API against Postgres and NATS: what needs the saga; the refusals are in app_test.ts. */
import assert from "node:assert/strict";
import { bearer, call, integrationTest, type Service, waitFor } from "../testing/env.ts";

const uuid = () => crypto.randomUUID();

function assertProblem(res: Awaited<ReturnType<typeof call>>, status: number) {
  assert.equal(res.status, status, JSON.stringify(res.body));
  assert.equal(res.headers.get("Content-Type"), "application/problem+json");
  assert.equal(res.body.status, status);
  for (const key of ["type", "title", "detail"]) assert.equal(typeof res.body[key], "string");
  assert.ok(!/at .*\.ts:\d+|select |insert /i.test(JSON.stringify(res.body)), "no stack or SQL");
  return res.body;
}

async function committed(dialogs: Service, user: string, id: string) {
  await waitFor(async () => {
    const r = await call(`${dialogs.url}/api/messages/${id}`, { auth: await bearer(user) });
    return r.body?.status === "committed";
  }, { what: "committed" });
}

integrationTest(
  "dialogs API: Idempotency-Key returns the same message and creates nothing new",
  async (env) => {
    const d = await env.startDialogs();
    const c = await env.startCounters();
    const a = uuid(), b = uuid();
    const auth = await bearer(a);
    const headers = { "Idempotency-Key": "send-42" };
    const url = `${d.url}/api/dialog/${b}/send`;
    const [first, second] = await Promise.all([
      call(url, { auth, body: { text: "once" }, headers }),
      call(url, { auth, body: { text: "once" }, headers }),
    ]);
    assert.equal(first.status, 202);
    assert.equal(second.status, 202);
    assert.equal(second.body.messageId, first.body.messageId);
    assert.equal(second.body.transactionId, first.body.transactionId);
    await committed(d, a, first.body.messageId);
    const third = await call(url, { auth, body: { text: "once" }, headers });
    assert.deepEqual(third.body, { ...first.body, status: "committed" });

    const reused = await call(url, { auth, body: { text: "something else" }, headers });
    assertProblem(reused, 422);
    // The same key from another sender is another message.
    const other = await call(`${d.url}/api/dialog/${b}/send`, {
      auth: await bearer(uuid()),
      body: { text: "once" },
      headers,
    });
    assert.notEqual(other.body.messageId, first.body.messageId);

    const [row] = await env.sql(
      "dialogs",
    )`select count(*)::int as n from messages where sender_id = ${a}`;
    assert.equal(row!.n, 1);
    await committed(d, a, first.body.messageId);
    const counters = await call(`${c.url}/api/counters/${a}`, { auth: await bearer(b) });
    assert.equal(counters.body.unread, 1);
  },
);

integrationTest(
  "dialogs API: list pages newest first with before, and dialogs sort by last activity",
  async (env) => {
    const d = await env.startDialogs();
    await env.startCounters();
    const me = uuid(), p1 = uuid(), p2 = uuid();
    const auth = await bearer(me);
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await call(`${d.url}/api/dialog/${p1}/send`, { auth, body: { text: `m${i}` } });
      ids.push(r.body.messageId);
    }
    const toP2 = await call(`${d.url}/api/dialog/${p2}/send`, { auth, body: { text: "p2" } });
    await committed(d, me, toP2.body.messageId);
    const reply = await call(`${d.url}/api/dialog/${me}/send`, {
      auth: await bearer(p1),
      body: { text: "back" },
    });
    await committed(d, p1, reply.body.messageId);

    const page1 = await call(`${d.url}/api/dialog/${p1}/list?limit=3`, { auth });
    assert.deepEqual(page1.body.messages.map((m: { text: string }) => m.text), [
      "back",
      "m4",
      "m3",
    ]);
    const last = page1.body.messages.at(-1).id;
    const page2 = await call(`${d.url}/api/dialog/${p1}/list?limit=3&before=${last}`, { auth });
    assert.deepEqual(page2.body.messages.map((m: { text: string }) => m.text), ["m2", "m1", "m0"]);

    const dialogs = await call(`${d.url}/api/dialogs`, { auth });
    assert.deepEqual(
      dialogs.body.dialogs.map((
        x: { peerId: string; lastMessage: { text: string } },
      ) => [x.peerId, x.lastMessage.text]),
      [[p1, "back"], [p2, "p2"]],
    );
    const limited = await call(`${d.url}/api/dialogs?limit=1`, { auth });
    assert.equal(limited.body.dialogs.length, 1);
  },
);

integrationTest("dialogs: /health, /metrics, /openapi.json and /docs answer", async (env) => {
  const d = await env.startDialogs();
  assert.equal((await call(`${d.url}/health/live`)).status, 200);
  const ready = await call(`${d.url}/health/ready`);
  assert.deepEqual(ready.body, { status: "ok", checks: { postgres: "ok", nats: "ok" } });
  const metrics = await fetch(`${d.url}/metrics`).then((r) => r.text());
  assert.match(metrics, /# TYPE http_request_duration_seconds histogram/);
  assert.match(metrics, /outbox_backlog \d+/);
  const doc = await call(`${d.url}/openapi.json`);
  assert.ok(doc.body.paths["/api/dialog/{peerId}/send"].post);
  assert.ok(doc.body.components.schemas.Problem);
  assert.equal(
    (await fetch(`${d.url}/docs`).then(async (r) => [r.status, await r.text()]))[0],
    200,
  );
});
