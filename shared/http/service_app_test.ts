import assert from "node:assert/strict";
import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import { badRequest, fieldErrors } from "../errors.ts";
import { createLogger } from "../log.ts";
import type { AppEnv } from "./app_env.ts";
import { handleError } from "./error_handler.ts";
import { ServiceApp } from "./service_app.ts";

const Text = z.string().superRefine((text, ctx) => {
  if (text.trim().length === 0) ctx.addIssue({ code: "custom", message: "text must not be empty" });
});

const ROUTES = [
  createRoute({
    method: "post",
    path: "/send/{peerId}",
    request: {
      params: z.object({ peerId: z.uuid() }),
      headers: z.object({ "idempotency-key": z.string().min(1).max(8).optional() }),
      body: {
        required: true,
        content: { "application/json": { schema: z.object({ text: Text }) } },
      },
    },
    responses: { 202: { description: "Accepted" } },
  }),
  createRoute({
    method: "post",
    path: "/read/{peerId}",
    request: {
      params: z.object({ peerId: z.uuid() }),
      body: {
        required: false,
        content: { "application/json": { schema: z.object({ upTo: z.uuid().optional() }) } },
      },
    },
    responses: { 200: { description: "Read" } },
  }),
  createRoute({
    method: "get",
    path: "/list/{peerId}",
    request: {
      params: z.object({ peerId: z.uuid() }),
      query: z.object({
        limit: z.coerce.number().int().min(1).max(200).default(50),
        before: z.uuid().optional(),
      }),
    },
    responses: { 200: { description: "Listed" } },
  }),
  createRoute({
    method: "put",
    path: "/token",
    request: {
      headers: z.object({ "X-Token": z.string().regex(/^t-\d+$/) }),
      body: {
        required: true,
        content: { "application/json": { schema: z.object({ on: z.boolean() }) } },
      },
    },
    responses: { 200: { description: "Set" } },
  }),
  createRoute({
    method: "get",
    path: "/plain",
    responses: { 200: { description: "Nothing to validate" } },
  }),
];

/** The same routes on `app`, each answering with what it validated. */
function mount<A extends OpenAPIHono<AppEnv>>(app: A): A {
  app.onError(handleError(createLogger("test", "error", () => {})));
  for (const route of ROUTES) {
    app.openapi(route, (c) => {
      const valid = (target: "param" | "query" | "header" | "json") =>
        (c.req.valid as (t: string) => unknown)(target) ?? null;
      return c.json({
        param: valid("param"),
        query: valid("query"),
        header: valid("header"),
        json: valid("json"),
      }, 200);
    });
  }
  return app;
}

const options = {
  defaultHook: (result: { success: boolean; data?: unknown; error?: z.ZodError }) => {
    if (!result.success) {
      throw badRequest("request validation failed", fieldErrors(result.error!.issues, result.data));
    }
  },
};

const ID = "6f1c1d5e-8a63-4c4e-9c51-2a0f4f5b7e10";
const JSON_TYPE = { "Content-Type": "application/json" };

const REQUESTS: [string, RequestInit?][] = [
  [`/send/${ID}`, { method: "POST", headers: JSON_TYPE, body: '{"text":"hi"}' }],
  [`/send/${ID}`, { method: "POST", headers: JSON_TYPE, body: '{"text":"hi","extra":1}' }],
  [`/send/${ID}`, { method: "POST", headers: JSON_TYPE, body: '{"text":"  "}' }],
  [`/send/${ID}`, { method: "POST", headers: JSON_TYPE, body: '{"text":5}' }],
  [`/send/${ID}`, { method: "POST", headers: JSON_TYPE, body: "{}" }],
  [`/send/${ID}`, { method: "POST", headers: JSON_TYPE, body: "[]" }],
  [`/send/${ID}`, { method: "POST", headers: JSON_TYPE, body: "null" }],
  [`/send/${ID}`, { method: "POST", headers: JSON_TYPE, body: "{oops" }],
  [`/send/${ID}`, { method: "POST", headers: JSON_TYPE }],
  [`/send/${ID}`, { method: "POST" }],
  [`/send/${ID}`, { method: "POST", body: '{"text":"hi"}' }],
  [`/send/${ID}`, { method: "POST", headers: { "Content-Type": "" }, body: '{"text":"hi"}' }],
  [`/send/${ID}`, { method: "POST", headers: { "Content-Type": "text/plain" }, body: "hi" }],
  [`/send/${ID}`, {
    method: "POST",
    headers: { "Content-Type": "application/json; charset=utf-8" },
    body: '{"text":"hi"}',
  }],
  [`/send/${ID}`, {
    method: "POST",
    headers: { "Content-Type": "Application/JSON" },
    body: '{"text":"hi"}',
  }],
  [`/send/${ID}`, {
    method: "POST",
    headers: { "Content-Type": "application/problem+json" },
    body: '{"text":"hi"}',
  }],
  [`/send/${ID}`, {
    method: "POST",
    headers: { "Content-Type": "application/json;" },
    body: '{"text":"hi"}',
  }],
  [`/send/${ID}`, {
    method: "POST",
    headers: { "Content-Type": "application/jsonx" },
    body: '{"text":"hi"}',
  }],
  [`/send/${ID}`, {
    method: "POST",
    headers: { ...JSON_TYPE, "Idempotency-Key": "k-1" },
    body: '{"text":"hi"}',
  }],
  [`/send/${ID}`, {
    method: "POST",
    headers: { ...JSON_TYPE, "Idempotency-Key": "far-too-long-a-key" },
    body: '{"text":"hi"}',
  }],
  [`/send/not-a-uuid`, { method: "POST", headers: JSON_TYPE, body: '{"text":5}' }],
  [`/send/${ID.toUpperCase()}`, { method: "POST", headers: JSON_TYPE, body: '{"text":"hi"}' }],
  [`/read/${ID}`, { method: "POST" }],
  [`/read/${ID}`, { method: "POST", headers: JSON_TYPE, body: "{}" }],
  [`/read/${ID}`, { method: "POST", headers: JSON_TYPE, body: `{"upTo":"${ID}"}` }],
  [`/read/${ID}`, { method: "POST", headers: JSON_TYPE, body: '{"upTo":"nope"}' }],
  [`/read/${ID}`, { method: "POST", headers: JSON_TYPE, body: "{oops" }],
  [`/read/${ID}`, { method: "POST", headers: JSON_TYPE }],
  [`/read/${ID}`, { method: "POST", body: "x" }],
  [`/read/${ID}`, { method: "POST", headers: { "Content-Type": "text/plain" }, body: "x" }],
  [`/read/${ID}`, { method: "POST", headers: { "Content-Type": "text/plain" } }],
  [`/list/${ID}`],
  [`/list/${ID}?limit=5&before=${ID}`],
  [`/list/${ID}?limit=0`],
  [`/list/${ID}?limit=x&before=y`],
  [`/list/${ID}?limit=5&limit=6`],
  [`/list/${ID}?other=1`],
  [`/list/nope?limit=0`],
  ["/token", { method: "PUT", headers: { ...JSON_TYPE, "X-Token": "t-1" }, body: '{"on":true}' }],
  ["/token", { method: "PUT", headers: { ...JSON_TYPE, "x-token": "t-1" }, body: '{"on":1}' }],
  ["/token", { method: "PUT", headers: { ...JSON_TYPE, "X-Token": "nope" }, body: '{"on":true}' }],
  ["/token", { method: "PUT", headers: JSON_TYPE, body: '{"on":true}' }],
  ["/plain"],
  ["/plain?x=1"],
];

async function answer(app: OpenAPIHono<AppEnv>, path: string, init?: RequestInit) {
  const res = await app.request(path, init);
  return { status: res.status, type: res.headers.get("Content-Type"), body: await res.text() };
}

Deno.test("ServiceApp.openapi() answers every request as @hono/zod-openapi's validators do", async () => {
  const reference = mount(new OpenAPIHono<AppEnv>(options));
  const app = mount(new ServiceApp(options));
  for (const [path, init] of REQUESTS) {
    const expected = await answer(reference, path, init);
    assert.deepEqual(await answer(app, path, init), expected, `${init?.method ?? "GET"} ${path}`);
  }
});

Deno.test("ServiceApp.openapi() describes routes in the OpenAPI document as OpenAPIHono does", () => {
  const config = { openapi: "3.1.0", info: { title: "t", version: "1" } };
  assert.deepEqual(
    mount(new ServiceApp(options)).getOpenAPI31Document(config),
    mount(new OpenAPIHono<AppEnv>(options)).getOpenAPI31Document(config),
  );
});

Deno.test("ServiceApp.openapi() leaves a route with its own hook to @hono/zod-openapi", async () => {
  const app = new ServiceApp(options);
  app.openapi(
    ROUTES[0]!,
    (c) => c.json({ ok: true }, 200),
    (result, c) => result.success ? undefined : c.json({ hooked: true }, 422),
  );
  const res = await app.request(`/send/${ID}`, { method: "POST", headers: JSON_TYPE, body: "{}" });
  assert.equal(res.status, 422);
  assert.deepEqual(await res.json(), { hooked: true });
});
