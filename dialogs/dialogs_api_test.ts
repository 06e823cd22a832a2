import assert from "node:assert/strict";
import { sign } from "hono/jwt";
import { signToken } from "../shared/auth.ts";
import {
  bearer,
  call,
  integrationTest,
  type Service,
  TEST_JWT_SECRET,
  waitFor,
} from "../testing/env.ts";

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
  "dialogs API: missing, malformed, expired and wrongly signed tokens get 401 problems",
  async (env) => {
    const d = await env.startDialogs();
    const url = `${d.url}/api/dialogs`;
    const user = uuid();
    const iat = Math.floor(Date.now() / 1000);
    for (
      const auth of [
        undefined,
        "Basic abc",
        "Bearer",
        "Bearer not-a-jwt",
        `Bearer ${await signToken(user, TEST_JWT_SECRET, 60, Date.now() - 3_600_000)}`,
        `Bearer ${await signToken(user, "some-other-secret-0123456789")}`,
        `Bearer ${await sign({ sub: "bob", iat, exp: iat + 60 }, TEST_JWT_SECRET, "HS256")}`,
      ]
    ) {
      assertProblem(await call(url, { auth }), 401);
    }
    assert.equal((await call(url, { auth: await bearer(user) })).status, 200);
  },
);

integrationTest(
  "dialogs API: bad input gets 400 problems listing the invalid fields and stores nothing",
  async (env) => {
    const d = await env.startDialogs();
    const me = uuid();
    const auth = await bearer(me);
    const peer = uuid();
    const cases: [string, string | undefined, Record<string, string>?][] = [
      ["/api/dialog/not-a-uuid/send", JSON.stringify({ text: "hi" })],
      [`/api/dialog/${peer}/send`, "{not json"],
      [`/api/dialog/${peer}/send`, JSON.stringify({})],
      [`/api/dialog/${peer}/send`, JSON.stringify({ text: 42 })],
      [`/api/dialog/${peer}/send`, JSON.stringify({ text: "" })],
      [`/api/dialog/${peer}/send`, JSON.stringify({ text: "   " })],
      [`/api/dialog/${peer}/send`, JSON.stringify({ text: "x".repeat(4097) })],
      [`/api/dialog/${peer}/send`, JSON.stringify({ text: "nul\u0000" })],
      [`/api/dialog/${peer}/send`, '{"text":"lone \\ud800 surrogate"}'],
      [`/api/dialog/${peer}/send`, JSON.stringify(["text"])],
      [`/api/dialog/${peer}/send`, undefined],
      [`/api/dialog/${me}/send`, JSON.stringify({ text: "to myself" })],
      [`/api/dialog/${peer}/send`, JSON.stringify({ text: "hi" }), {
        "Idempotency-Key": "has space",
      }],
    ];
    for (const [path, body, headers] of cases) {
      const res = await call(`${d.url}${path}`, { method: "POST", auth, body, headers });
      const problem = assertProblem(res, 400);
      assert.ok(problem.detail.length > 0, path);
    }
    const plain = await call(`${d.url}/api/dialog/${peer}/send`, {
      auth,
      body: JSON.stringify({ text: "hi" }),
      headers: { "Content-Type": "text/plain" },
    });
    assertProblem(plain, 415);
    const fields = await call(`${d.url}/api/dialog/${peer}/send`, { auth, body: { text: "" } });
    assert.deepEqual(fields.body.errors, [{ path: "text", message: "text must not be empty" }]);
    // Exactly 4096 characters, counted as characters not UTF-16 units, is accepted.
    const emoji = await call(`${d.url}/api/dialog/${peer}/send`, {
      auth,
      body: { text: "😀".repeat(4096) },
    });
    assert.equal(emoji.status, 202);
    for (const q of ["limit=0", "limit=abc", "limit=201", "before=nope"]) {
      assertProblem(await call(`${d.url}/api/dialog/${peer}/list?${q}`, { auth }), 400);
    }
    assertProblem(await call(`${d.url}/api/messages/nope`, { auth }), 400);
    const [row] = await env.sql("dialogs")`select count(*)::int as n from messages`;
    assert.equal(row!.n, 1, "only the valid send was stored");
  },
);

integrationTest(
  "dialogs API: a body over 64 KiB gets 413 and unknown ids and routes get 404",
  async (env) => {
    const d = await env.startDialogs();
    const auth = await bearer(uuid());
    const big = JSON.stringify({ text: "x".repeat(70_000) });
    assertProblem(await call(`${d.url}/api/dialog/${uuid()}/send`, { auth, body: big }), 413);
    assertProblem(await call(`${d.url}/api/messages/${uuid()}`, { auth }), 404);
    assertProblem(await call(`${d.url}/api/dialog/${uuid()}/list?before=${uuid()}`, { auth }), 404);
    assertProblem(await call(`${d.url}/api/nothing-here`, { auth }), 404);
  },
);

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
  "dialogs API: messages are visible to their sender and, once committed, their recipient only",
  async (env) => {
    const d = await env.startDialogs({ relay: false });
    const a = uuid(), b = uuid(), stranger = uuid();
    const sent = await call(`${d.url}/api/dialog/${b}/send`, {
      auth: await bearer(a),
      body: { text: "psst" },
    });
    const id = sent.body.messageId;
    const asSender = await call(`${d.url}/api/messages/${id}`, { auth: await bearer(a) });
    assert.equal(asSender.body.status, "pending");
    assertProblem(await call(`${d.url}/api/messages/${id}`, { auth: await bearer(b) }), 404);
    assertProblem(await call(`${d.url}/api/messages/${id}`, { auth: await bearer(stranger) }), 404);
    const bList = await call(`${d.url}/api/dialog/${a}/list`, { auth: await bearer(b) });
    assert.deepEqual(bList.body, { messages: [] });
    const bDialogs = await call(`${d.url}/api/dialogs`, { auth: await bearer(b) });
    assert.deepEqual(bDialogs.body, { dialogs: [] });
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
