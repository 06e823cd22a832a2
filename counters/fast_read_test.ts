import assert from "node:assert/strict";
import { withNoGroups } from "../testing/clients.ts";
import { createVerifiedTokens, signToken } from "../shared/auth.ts";
import type { AnsweredRequest } from "../shared/http/request_log.ts";
import { bearer, call, integrationTest } from "../testing/env.ts";
import type { CoherentCounters, ComposedCounters } from "./coherence.ts";
import type { UserCounters } from "./counters.ts";
import { fastCountersRead, pathOf } from "./fast_read.ts";

const SECRET = "fast-read-test-secret-0123456789";
const PEER = "4b2a61f0-8d0e-4c1e-9f3a-2a5c7d9e1b00";

Deno.test("pathOf() takes the path from a request URL, without the query", () => {
  assert.equal(pathOf("http://127.0.0.1:8082/api/counters"), "/api/counters");
  assert.equal(pathOf("http://h/api/counters?x=1&y=/z"), "/api/counters");
  assert.equal(pathOf("http://h"), "/");
  assert.equal(pathOf("http://h/"), "/");
});

/** A user in no group, as the reader composes it. */
const alone = (user: UserCounters): ComposedCounters => ({ user, group: () => undefined });

/** The fast path over a stub reader: `held` is what the in-process cache holds. */
async function fastPathFor(
  held: ComposedCounters | undefined,
  read: () => Promise<ComposedCounters>,
) {
  const tokens = createVerifiedTokens(SECRET);
  const userId = crypto.randomUUID();
  const token = await signToken(userId, SECRET);
  const recorded: AnsweredRequest[] = [];
  const reader = { cached: () => held, read } as unknown as CoherentCounters;
  const fast = fastCountersRead({ tokens, reader, recordRequest: (r) => recorded.push(r) });
  const get = (headers: Record<string, string> = {}, path = "/api/counters", method = "GET") =>
    fast(
      new Request(`http://127.0.0.1/${path.slice(1)}`, {
        method,
        headers: { Authorization: `Bearer ${token}`, ...headers },
      }),
    );
  return { tokens, token, userId, recorded, get };
}

Deno.test("fastCountersRead() leaves to the app what it does not know: new token, browser, other requests", async () => {
  const counters = alone({ version: 1, dialogs: { [PEER]: 2 } });
  const f = await fastPathFor(counters, () => Promise.resolve(counters));
  assert.equal(f.get(), undefined, "a token this process has not verified yet");
  await f.tokens.verify(f.token);
  assert.ok(f.get() instanceof Response);
  assert.equal(f.get({ Origin: "http://localhost:8081" }), undefined, "a browser (CORS)");
  assert.equal(f.get({}, "/api/counters", "HEAD"), undefined);
  assert.equal(f.get({}, "/api/counters", "POST"), undefined);
  assert.equal(f.get({}, "/api/counters/"), undefined);
  assert.equal(f.get({}, `/api/counters/${PEER}`), undefined);
  assert.equal(f.get({ Authorization: "Basic x" }), undefined);
  assert.equal(f.get({ Authorization: "Bearer someone.else.token" }), undefined);
});

Deno.test("fastCountersRead() answers the body, headers and metric the app would, and echoes a given request id", async () => {
  const counters = alone({
    version: 7,
    dialogs: { [PEER]: 2, "00000000-0000-4000-8000-000000000000": 0 },
  });
  const f = await fastPathFor(counters, () => Promise.reject(new Error("not called")));
  await f.tokens.verify(f.token);
  const res = f.get({ "X-Request-ID": "given-id-1" }) as Response;
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("Content-Type"), "application/json");
  assert.equal(res.headers.get("X-Request-ID"), "given-id-1");
  assert.deepEqual(await res.json(), withNoGroups({ total: 2, dialogs: { [PEER]: 2 } }));
  const made = f.get({ "X-Request-ID": "not valid!" }) as Response;
  assert.match(made.headers.get("X-Request-ID")!, /^[0-9a-f-]{36}$/);
  await made.body?.cancel();
  assert.deepEqual(
    f.recorded.map(({ requestId, route, status, userId }) => ({
      requestId,
      route,
      status,
      userId,
    })),
    [
      { requestId: "given-id-1", route: "/api/counters", status: 200, userId: f.userId },
      {
        requestId: made.headers.get("X-Request-ID"),
        route: "/api/counters",
        status: 200,
        userId: f.userId,
      },
    ],
  );
});

Deno.test("fastCountersRead() reads through on a local miss, and leaves a failed read to the app", async () => {
  const counters = alone({ version: 3, dialogs: { [PEER]: 1 } });
  const ok = await fastPathFor(undefined, () => Promise.resolve(counters));
  await ok.tokens.verify(ok.token);
  const res = await ok.get();
  assert.deepEqual(await res!.json(), withNoGroups({ total: 1, dialogs: { [PEER]: 1 } }));

  const failing = await fastPathFor(undefined, () => Promise.reject(new Error("postgres down")));
  await failing.tokens.verify(failing.token);
  assert.equal(await failing.get(), undefined, "the app reads again and answers the error");
  assert.equal(failing.recorded.length, 0);
});

integrationTest(
  "counters API: GET /api/counters answers alike through the fast path and through the app",
  async (env) => {
    const c = await env.startCounters();
    const me = crypto.randomUUID(), peer = crypto.randomUUID();
    const sql = env.sql("counters");
    await sql`insert into unread_counters (user_id, peer_id, unread) values (${me}, ${peer}, 5)`;
    await sql`insert into counter_versions (user_id, version) values (${me}, 5)`;
    const auth = await bearer(me);
    const origin = "http://localhost:8081";
    // The first request verifies the token in the app; an Origin header keeps a request in the app.
    const answers = [];
    const browser: Record<string, string> = { Origin: origin }, plain: Record<string, string> = {};
    for (const headers of [browser, plain, browser, plain]) {
      const res = await fetch(`${c.url}/api/counters`, {
        headers: { Authorization: auth, "X-Request-ID": "same-id", ...headers },
      });
      answers.push({
        status: res.status,
        type: res.headers.get("Content-Type"),
        cors: res.headers.has("Access-Control-Allow-Origin"),
        requestId: res.headers.get("X-Request-ID"),
        body: await res.json(),
      });
    }
    const expected = {
      status: 200,
      type: "application/json",
      requestId: "same-id",
      body: withNoGroups({ total: 5, dialogs: { [peer]: 5 } }),
    };
    assert.deepEqual(answers, [
      { ...expected, cors: true },
      { ...expected, cors: false },
      { ...expected, cors: true },
      { ...expected, cors: false },
    ]);
    const metrics = await (await fetch(`${c.url}/metrics`)).text();
    assert.match(
      metrics,
      /http_request_duration_seconds_count\{method="GET",route="\/api\/counters",status="200"\} 4/,
    );
    const unauthorized = await call(`${c.url}/api/counters`, { auth: "not-a-token" });
    assert.equal(unauthorized.status, 401, "an unknown token still goes to the app");
  },
);
