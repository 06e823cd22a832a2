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
      groups: {},
      mentions: 0,
      muted: [],
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
  assert.deepEqual(res.body, {
    total: 4,
    dialogs: { [peer]: 4 },
    groups: {},
    mentions: 0,
    muted: [],
  });
  const cached = await env.cachedEntry(me);
  assert.equal(cached, `4|{"dialogs":{"${peer}":4}}`);
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
      assert.deepEqual(res.body, {
        total: 2,
        dialogs: { [peer]: 2 },
        groups: {},
        mentions: 0,
        muted: [],
      });
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
