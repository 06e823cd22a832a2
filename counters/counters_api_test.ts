import assert from "node:assert/strict";
import { startCounters } from "./main.ts";
import { bearer, call, integrationTest } from "../testing/env.ts";

integrationTest(
  "counters API: 401 without a token, 400 for a bad peer id, zeros for a new user",
  async (env) => {
    const c = await env.startCounters();
    const me = crypto.randomUUID();
    const res = await call(`${c.url}/api/counters`);
    assert.equal(res.status, 401);
    assert.equal(res.headers.get("Content-Type"), "application/problem+json");
    const bad = await call(`${c.url}/api/counters/nope`, { auth: await bearer(me) });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.errors[0].path, "peerId");
    assert.deepEqual((await call(`${c.url}/api/counters`, { auth: await bearer(me) })).body, {
      total: 0,
      dialogs: {},
    });
    const peer = crypto.randomUUID();
    assert.deepEqual(
      (await call(`${c.url}/api/counters/${peer}`, { auth: await bearer(me) })).body,
      {
        peerId: peer,
        unread: 0,
      },
    );
  },
);

integrationTest("counters API: reads Postgres on a cache miss and fills the cache", async (env) => {
  const c = await env.startCounters();
  const me = crypto.randomUUID(), peer = crypto.randomUUID();
  const sql = env.sql("counters");
  await sql`insert into unread_counters (user_id, peer_id, unread) values (${me}, ${peer}, 4)`;
  await sql`insert into counter_versions (user_id, version) values (${me}, 4)`;
  const res = await call(`${c.url}/api/counters`, { auth: await bearer(me) });
  assert.deepEqual(res.body, { total: 4, dialogs: { [peer]: 4 } });
  const cached = await env.redis().get(`${env.redisPrefix}user:${me}`);
  assert.equal(cached, `4|{"${peer}":4}`);
});

integrationTest(
  "counters API: with Redis unreachable reads come from Postgres and readiness names Redis",
  async (env) => {
    const c = await startCounters(env.countersConfig({ REDIS_URL: "redis://127.0.0.1:1" }), {
      logSink: env.logSink,
      hostname: "127.0.0.1",
    });
    try {
      const url = `http://127.0.0.1:${c.port}`;
      const me = crypto.randomUUID(), peer = crypto.randomUUID();
      await env.sql(
        "counters",
      )`insert into unread_counters (user_id, peer_id, unread) values (${me}, ${peer}, 2)`;
      const res = await call(`${url}/api/counters`, { auth: await bearer(me) });
      assert.deepEqual(res.body, { total: 2, dialogs: { [peer]: 2 } });
      const ready = await call(`${url}/health/ready`);
      assert.equal(ready.status, 503);
      assert.equal(ready.body.checks.postgres, "ok");
      assert.notEqual(ready.body.checks.redis, "ok");
      assert.match(ready.body.detail, /redis/);
    } finally {
      await c.stop();
    }
  },
);

integrationTest(
  "counters API: HEAD on the stream answers at once and opens no stream",
  async (env) => {
    const c = await env.startCounters();
    const me = crypto.randomUUID();
    const res = await fetch(`${c.url}/api/counters/stream`, {
      method: "HEAD",
      headers: { Authorization: await bearer(me) },
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("Content-Type"), "text/event-stream");
    await new Promise((r) => setTimeout(r, 100));
    const metrics = await fetch(`${c.url}/metrics`).then((r) => r.text());
    assert.match(metrics, /\ncounters_live_streams 0\n/);
  },
);

integrationTest(
  "counters API: the in-memory fast path answers exactly like the full app",
  async (env) => {
    const c = await env.startCounters();
    const me = crypto.randomUUID(), peer = crypto.randomUUID();
    await env.sql(
      "counters",
    )`insert into unread_counters (user_id, peer_id, unread) values (${me}, ${peer}, 3)`;
    const auth = await bearer(me);
    const full = await call(`${c.url}/api/counters`, { auth }); // verifies the token, fills the caches
    const fast = await call(`${c.url}/api/counters`, {
      auth,
      headers: { "X-Request-ID": "fast-1" },
    });
    assert.deepEqual(fast.body, full.body);
    assert.deepEqual(fast.body, { total: 3, dialogs: { [peer]: 3 } });
    assert.equal(fast.headers.get("Content-Type"), full.headers.get("Content-Type"));
    assert.equal(fast.headers.get("X-Request-ID"), "fast-1");
    const metrics = await fetch(`${c.url}/metrics`).then((r) => r.text());
    assert.match(metrics, /counters_cache_lookups_total\{result="local"\} [1-9]/);
    assert.match(
      metrics,
      /http_request_duration_seconds_count\{method="GET",route="\/api\/counters",status="200"\} 2\n/,
    );
    // A browser's request (with Origin) gets the CORS headers of the full app.
    const cors = await call(`${c.url}/api/counters`, {
      auth,
      headers: { Origin: "http://localhost:8081" },
    });
    assert.equal(cors.headers.get("Access-Control-Allow-Origin"), "http://localhost:8081");
    assert.deepEqual(cors.body, full.body);
  },
);

integrationTest(
  "counters API: a remembered token is refused once it expires, on the fast path too",
  async (env) => {
    const c = await env.startCounters();
    const auth = await bearer(crypto.randomUUID(), 1);
    assert.equal((await call(`${c.url}/api/counters`, { auth })).status, 200);
    assert.equal((await call(`${c.url}/api/counters`, { auth })).status, 200);
    await new Promise((r) => setTimeout(r, 2_100));
    const expired = await call(`${c.url}/api/counters`, { auth });
    assert.equal(expired.status, 401);
    assert.match(expired.body.detail, /expired/);
  },
);
