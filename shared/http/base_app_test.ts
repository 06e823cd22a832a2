import assert from "node:assert/strict";
import { createRoute, z } from "@hono/zod-openapi";
import { createBaseApp, MAX_BODY_BYTES } from "./base_app.ts";
import { createLogger } from "../log.ts";
import { createMetrics } from "../metrics.ts";

function testApp() {
  const lines: string[] = [];
  const log = createLogger("test", "debug", (l) => lines.push(l));
  const app = createBaseApp({ service: "test", log, metrics: createMetrics() });
  app.openapi(
    createRoute({
      method: "post",
      path: "/echo/{id}",
      request: {
        params: z.object({ id: z.uuid() }),
        body: {
          required: true,
          content: { "application/json": { schema: z.object({ text: z.string().min(1) }) } },
        },
      },
      responses: { 200: { description: "ok" } },
    }),
    (c) => c.json({ text: c.req.valid("json").text }, 200),
  );
  app.get("/boom", () => {
    throw new Error("secret SQL: select * from users");
  });
  return { app, lines };
}

const ID = "6f1c1d5e-8a63-4c4e-9c51-2a0f4f5b7e10";
const json = { "Content-Type": "application/json" };

async function expectProblem(res: Response, status: number) {
  assert.equal(res.status, status);
  assert.equal(res.headers.get("Content-Type"), "application/problem+json");
  const body = await res.json();
  assert.equal(body.status, status);
  for (const key of ["type", "title", "detail"]) assert.equal(typeof body[key], "string", key);
  return body;
}

Deno.test("createBaseApp() answers valid input and echoes a given X-Request-ID", async () => {
  const { app } = testApp();
  const res = await app.request(`/echo/${ID}`, {
    method: "POST",
    headers: { ...json, "X-Request-ID": "abc-123" },
    body: JSON.stringify({ text: "hi" }),
  });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("X-Request-ID"), "abc-123");
});

Deno.test("createBaseApp() makes an X-Request-ID when none is given, on errors too", async () => {
  const { app } = testApp();
  const res = await app.request("/nowhere");
  await expectProblem(res, 404);
  assert.match(res.headers.get("X-Request-ID") ?? "", /^[0-9a-f-]{36}$/);
});

Deno.test("createBaseApp() lists each invalid field in a 400 problem", async () => {
  const { app } = testApp();
  const res = await app.request("/echo/not-a-uuid", {
    method: "POST",
    headers: json,
    body: JSON.stringify({ text: 5 }),
  });
  const body = await expectProblem(res, 400);
  assert.ok(Array.isArray(body.errors));
  assert.ok(body.errors.some((e: { path: string }) => e.path === "id"), JSON.stringify(body));
});

Deno.test("createBaseApp() answers malformed JSON and a missing body with 400", async () => {
  const { app } = testApp();
  await expectProblem(
    await app.request(`/echo/${ID}`, { method: "POST", headers: json, body: "{oops" }),
    400,
  );
  await expectProblem(await app.request(`/echo/${ID}`, { method: "POST" }), 400);
  await expectProblem(
    await app.request(`/echo/${ID}`, { method: "POST", headers: json, body: "{}" }),
    400,
  );
});

Deno.test("createBaseApp() refuses a body over 64 KiB with 413", async () => {
  const { app } = testApp();
  const res = await app.request(`/echo/${ID}`, {
    method: "POST",
    headers: json,
    body: JSON.stringify({ text: "x".repeat(MAX_BODY_BYTES) }),
  });
  await expectProblem(res, 413);
});

Deno.test("createBaseApp() answers an unexpected error with a bare 500 and logs it with the request id", async () => {
  const { app, lines } = testApp();
  const res = await app.request("/boom", { headers: { "X-Request-ID": "req-boom" } });
  const body = await expectProblem(res, 500);
  assert.ok(!JSON.stringify(body).includes("select"), "no SQL in the body");
  const logged = lines.map((l) => JSON.parse(l)).find((l) => l.msg === "unhandled error");
  assert.equal(logged?.requestId, "req-boom");
});

Deno.test("createBaseApp() answers a lost database connection with 503 and Retry-After", async () => {
  const { app } = testApp();
  app.get("/db", () => {
    throw Object.assign(new Error("write CONNECTION_CLOSED 127.0.0.1:5432"), {
      code: "CONNECTION_CLOSED",
    });
  });
  const res = await app.request("/db");
  const body = await expectProblem(res, 503);
  assert.equal(res.headers.get("Retry-After"), "1");
  assert.ok(!body.detail.includes("5432"), "no connection details in the body");
});

Deno.test("createBaseApp() names a missing body field as required", async () => {
  const { app } = testApp();
  const res = await app.request(`/echo/${ID}`, { method: "POST", headers: json, body: "{}" });
  const body = await expectProblem(res, 400);
  assert.deepEqual(body.errors, [{ path: "text", message: "text is required (string)" }]);
});

Deno.test("createBaseApp() keeps zod's words for a field that is present but wrong", async () => {
  const { app } = testApp();
  const res = await app.request(`/echo/${ID}`, {
    method: "POST",
    headers: json,
    body: JSON.stringify({ text: 5 }),
  });
  const body = await expectProblem(res, 400);
  assert.equal(body.errors[0].path, "text");
  assert.doesNotMatch(body.errors[0].message, /required/);
});

Deno.test("createBaseApp() answers a body that is not JSON with a 415 that says JSON is expected", async () => {
  const { app } = testApp();
  const res = await app.request(`/echo/${ID}`, {
    method: "POST",
    headers: { "Content-Type": "text/plain" },
    body: "hi",
  });
  const body = await expectProblem(res, 415);
  assert.match(body.detail, /Content-Type: application\/json/);
  assert.match(body.detail, /text\/plain/);
});

Deno.test("createBaseApp() answers a known path with the wrong method 405 and Allow", async () => {
  const { app } = testApp();
  const res = await app.request(`/echo/${ID}`, { method: "DELETE" });
  const body = await expectProblem(res, 405);
  assert.equal(res.headers.get("Allow"), "POST");
  assert.match(body.detail, /POST/);
  const get = await app.request("/health/live", { method: "POST" });
  await expectProblem(get, 405);
  assert.equal(get.headers.get("Allow"), "GET, HEAD");
  await expectProblem(await app.request("/echo/a/b", { method: "DELETE" }), 404);
});

Deno.test("createBaseApp() gives each problem an absolute type that resolves to a page it serves", async () => {
  const { app } = testApp();
  const res = await app.request(`http://counters.example:8082/echo/${ID}`, {
    method: "POST",
    headers: json,
    body: "{}",
  });
  const { type } = await expectProblem(res, 400);
  assert.equal(type, "http://counters.example:8082/problems/validation-error");
  const page = await app.request(new URL(type).pathname);
  assert.equal(page.status, 200);
  assert.match(page.headers.get("Content-Type") ?? "", /text\/html/);
  assert.match(await page.text(), /validation-error/);
  const index = await (await app.request("/problems")).text();
  assert.match(index, /href="\/problems\/method-not-allowed"/);
  await expectProblem(await app.request("/problems/no-such-type"), 404);
});

Deno.test("createBaseApp() judges a declared Content-Length over 64 KiB 413 before reading the body", async () => {
  const { app } = testApp();
  await using server = Deno.serve(
    { port: 0, hostname: "127.0.0.1", onListen: () => {} },
    app.fetch,
  );
  const url = `http://127.0.0.1:${server.addr.port}/echo/${ID}`;
  const big = await fetch(url, {
    method: "POST",
    headers: json,
    body: JSON.stringify({ text: "x".repeat(MAX_BODY_BYTES) }),
  });
  await expectProblem(big, 413);
  assert.match(big.headers.get("X-Request-ID") ?? "", /^[0-9a-f-]{36}$/);
  const small = await fetch(url, { method: "POST", headers: json, body: '{"text":"hi"}' });
  assert.equal(small.status, 200);
  assert.deepEqual(await small.json(), { text: "hi" });
  const declared = await app.request(`/echo/${ID}`, {
    method: "POST",
    headers: { ...json, "Content-Length": String(MAX_BODY_BYTES + 1) },
    body: '{"text":"hi"}',
  });
  await expectProblem(declared, 413);
});

Deno.test("createBaseApp() adds X-Request-ID to an answer whose headers are immutable", async () => {
  const { app } = testApp();
  app.get("/away", () => Response.redirect("http://example.com/", 302));
  const res = await app.request("/away", { headers: { "X-Request-ID": "req-away" } });
  assert.equal(res.status, 302);
  assert.equal(res.headers.get("Location"), "http://example.com/");
  assert.equal(res.headers.get("X-Request-ID"), "req-away");
});
