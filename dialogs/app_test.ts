/** The dialogs routes through app.request() on an in-memory store: every refusal, no servers. */
import assert from "node:assert/strict";
import { sign } from "hono/jwt";
import { signToken } from "../shared/auth.ts";
import { createBaseApp } from "../shared/http/base_app.ts";
import { createLogger } from "../shared/log.ts";
import { createMetrics } from "../shared/metrics.ts";
import { bearer, call, TEST_JWT_SECRET } from "../testing/env.ts";
import { memoryMessageStore } from "../testing/memory_store.ts";
import { mountDialogsRoutes } from "./app.ts";

const uuid = () => crypto.randomUUID();

function dialogsApp() {
  const store = memoryMessageStore();
  const app = createBaseApp({
    service: "dialogs",
    log: createLogger("dialogs", "error", () => {}),
    metrics: createMetrics(),
  });
  mountDialogsRoutes(app, { store, jwtSecret: TEST_JWT_SECRET });
  return {
    store,
    call: (path: string, init?: Parameters<typeof call>[1]) => call(path, init, app.request),
  };
}

function assertProblem(
  res: { status: number; body: Record<string, unknown>; headers: Headers },
  status: number,
) {
  assert.equal(res.status, status, JSON.stringify(res.body));
  assert.equal(res.headers.get("Content-Type"), "application/problem+json");
  assert.equal(res.body.status, status);
  for (const key of ["type", "title", "detail"]) assert.equal(typeof res.body[key], "string", key);
  return res.body;
}

Deno.test("dialogs routes answer missing, malformed, expired and wrongly signed tokens with 401", async () => {
  const { call } = dialogsApp();
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
    assertProblem(await call("/api/dialogs", { auth }), 401);
  }
  assertProblem(await call(`/api/dialog/${uuid()}/send`, { body: { text: "hi" } }), 401);
  assert.equal((await call("/api/dialogs", { auth: await bearer(user) })).status, 200);
});

Deno.test("dialogs routes answer bad input with 400 problems listing the fields, and store nothing", async () => {
  const { call, store } = dialogsApp();
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
    [`/api/dialog/${me.toUpperCase()}/send`, JSON.stringify({ text: "to myself" })],
    [`/api/dialog/${peer}/send`, JSON.stringify({ text: "hi" }), {
      "Idempotency-Key": "has space",
    }],
    [`/api/dialog/${peer}/read`, JSON.stringify({ upTo: "nope" })],
    ["/api/dialog/not-a-uuid/read", undefined],
  ];
  for (const [path, body, headers] of cases) {
    const res = await call(path, { method: "POST", auth, body, headers });
    const problem = assertProblem(res, 400);
    assert.ok(String(problem.detail).length > 0, path);
  }
  const fields = await call(`/api/dialog/${peer}/send`, { auth, body: { text: "" } });
  assert.deepEqual(fields.body.errors, [{ path: "text", message: "text must not be empty" }]);
  for (const q of ["limit=0", "limit=abc", "limit=201", "limit=1.5", "before=nope"]) {
    assertProblem(await call(`/api/dialog/${peer}/list?${q}`, { auth }), 400);
  }
  assertProblem(await call("/api/dialogs?limit=0", { auth }), 400);
  assertProblem(await call("/api/messages/nope", { auth }), 400);
  assert.equal(store.messages.length, 0);
  // Exactly 4096 characters, counted as characters not UTF-16 units, is accepted.
  const emoji = await call(`/api/dialog/${peer}/send`, { auth, body: { text: "😀".repeat(4096) } });
  assert.equal(emoji.status, 202);
  assert.equal(store.messages.length, 1, "only the valid send was stored");
});

Deno.test("dialogs routes answer a body that is not JSON with 415 and one over 64 KiB with 413", async () => {
  const { call, store } = dialogsApp();
  const auth = await bearer(uuid());
  const plain = await call(`/api/dialog/${uuid()}/send`, {
    auth,
    body: JSON.stringify({ text: "hi" }),
    headers: { "Content-Type": "text/plain" },
  });
  assertProblem(plain, 415);
  const big = JSON.stringify({ text: "x".repeat(70_000) });
  assertProblem(await call(`/api/dialog/${uuid()}/send`, { auth, body: big }), 413);
  assert.equal(store.messages.length, 0);
});

Deno.test("dialogs routes answer unknown routes, messages and cursors with 404", async () => {
  const { call, store } = dialogsApp();
  const [me, peer] = [uuid(), uuid()];
  const auth = await bearer(me);
  const elsewhere = await call(`/api/dialog/${uuid()}/send`, {
    auth: await bearer(peer),
    body: { text: "another dialog" },
  });
  assertProblem(await call(`/api/messages/${uuid()}`, { auth }), 404);
  assertProblem(await call(`/api/dialog/${peer}/list?before=${uuid()}`, { auth }), 404);
  const foreign = elsewhere.body.messageId;
  assertProblem(await call(`/api/dialog/${peer}/list?before=${foreign}`, { auth }), 404);
  assertProblem(
    await call(`/api/dialog/${peer}/read`, { auth, body: { upTo: foreign } }),
    404,
  );
  assertProblem(await call("/api/nothing-here", { auth }), 404);
  assert.equal(store.messages.length, 1);
});

Deno.test("dialogs routes show a message to its sender always and to its recipient once committed", async () => {
  const { call, store } = dialogsApp();
  const [a, b, stranger] = [uuid(), uuid(), uuid()];
  const sent = await call(`/api/dialog/${b}/send`, {
    auth: await bearer(a),
    body: { text: "psst" },
  });
  assert.equal(sent.status, 202);
  const id = sent.body.messageId;
  assert.deepEqual(sent.body, {
    messageId: id,
    transactionId: store.messages[0]!.transaction_id,
    status: "pending",
  });
  const asSender = await call(`/api/messages/${id}`, { auth: await bearer(a) });
  assert.deepEqual(
    [asSender.body.from, asSender.body.to, asSender.body.text, asSender.body.status],
    [a, b, "psst", "pending"],
  );
  assertProblem(await call(`/api/messages/${id}`, { auth: await bearer(b) }), 404);
  assertProblem(await call(`/api/messages/${id}`, { auth: await bearer(stranger) }), 404);
  assert.deepEqual((await call(`/api/dialog/${a}/list`, { auth: await bearer(b) })).body, {
    messages: [],
  });
  assert.deepEqual((await call("/api/dialogs", { auth: await bearer(b) })).body, { dialogs: [] });
  assertProblem(
    await call(`/api/dialog/${a}/read`, { auth: await bearer(b), body: { upTo: id } }),
    404,
  );

  store.setStatus(id, "committed");
  const asRecipient = await call(`/api/messages/${id}`, { auth: await bearer(b) });
  assert.equal(asRecipient.body.status, "committed");
  const dialogs = await call("/api/dialogs", { auth: await bearer(b) });
  assert.deepEqual(dialogs.body.dialogs.map((d: { peerId: string }) => d.peerId), [a]);
  const read = await call(`/api/dialog/${a}/read`, { auth: await bearer(b), body: { upTo: id } });
  assert.deepEqual(read.body, { read: 1 });
  const again = await call(`/api/dialog/${a}/read`, { method: "POST", auth: await bearer(b) });
  assert.deepEqual(again.body, { read: 0 });
});

Deno.test("dialogs routes answer a reused Idempotency-Key with the same message, or 422 for another", async () => {
  const { call, store } = dialogsApp();
  const [a, b] = [uuid(), uuid()];
  const auth = await bearer(a);
  const headers = { "Idempotency-Key": "send-42" };
  const first = await call(`/api/dialog/${b}/send`, { auth, body: { text: "once" }, headers });
  const second = await call(`/api/dialog/${b}/send`, { auth, body: { text: "once" }, headers });
  assert.equal(first.status, 202);
  assert.deepEqual(second, { ...second, status: 202, body: first.body });
  assertProblem(
    await call(`/api/dialog/${b}/send`, { auth, body: { text: "something else" }, headers }),
    422,
  );
  assertProblem(
    await call(`/api/dialog/${uuid()}/send`, { auth, body: { text: "once" }, headers }),
    422,
  );
  const other = await call(`/api/dialog/${b}/send`, {
    auth: await bearer(uuid()),
    body: { text: "once" },
    headers,
  });
  assert.notEqual(other.body.messageId, first.body.messageId, "another sender's key is its own");
  assert.equal(store.messages.length, 2);
});
