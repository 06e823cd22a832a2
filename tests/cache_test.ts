/** Promise 5 end to end: counters keeps serving correct reads without Redis and refills it after. */
import assert from "node:assert/strict";
import { withNoGroups } from "../testing/clients.ts";
import { bearer, call, integrationTest, type Service, waitFor } from "../testing/env.ts";
import { startTcpProxy } from "../testing/tcp_proxy.ts";

async function sendCommitted(dialogs: Service, from: string, to: string, text: string) {
  const sent = await call(`${dialogs.url}/api/dialog/${to}/send`, {
    auth: await bearer(from),
    body: { text },
  });
  assert.equal(sent.status, 202, JSON.stringify(sent.body));
  const id: string = sent.body.messageId;
  await waitFor(async () => {
    const res = await call(`${dialogs.url}/api/messages/${id}`, { auth: await bearer(from) });
    return res.body?.status === "committed";
  }, { what: `message ${id} to be committed` });
}

async function countersOf(service: Service, user: string) {
  const res = await call(`${service.url}/api/counters`, { auth: await bearer(user) });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body;
}

integrationTest(
  "Redis down: reads come from Postgres, readiness names redis, sends still commit, " +
    "and the cache refills when Redis is back",
  async (env) => {
    const redisUrl = new URL(env.redisUrl);
    const proxy = startTcpProxy({
      hostname: redisUrl.hostname,
      port: Number(redisUrl.port || 6379),
    });
    try {
      const dialogs = await env.startDialogs();
      const counters = await env.startCounters({
        overrides: { REDIS_URL: `redis://127.0.0.1:${proxy.port}` },
      });
      const a = crypto.randomUUID(), b = crypto.randomUUID();

      await sendCommitted(dialogs, a, b, "one");
      assert.deepEqual(
        await countersOf(counters, b),
        withNoGroups({ total: 1, dialogs: { [a]: 1 } }),
      );
      assert.equal(
        await env.cachedEntry(b),
        `1|{"dialogs":{"${a}":1}}`,
        "cached through the proxy",
      );
      assert.equal((await call(`${counters.url}/health/ready`)).status, 200);

      await proxy.cut();
      assert.deepEqual(
        await countersOf(counters, b),
        withNoGroups({ total: 1, dialogs: { [a]: 1 } }),
      );
      const ready = await call(`${counters.url}/health/ready`);
      assert.equal(ready.status, 503);
      assert.equal(ready.body.checks.postgres, "ok");
      assert.equal(ready.body.checks.nats, "ok");
      assert.notEqual(ready.body.checks.redis, "ok");
      assert.match(ready.body.detail, /redis/);

      await sendCommitted(dialogs, a, b, "two");
      assert.deepEqual(
        await countersOf(counters, b),
        withNoGroups({ total: 2, dialogs: { [a]: 2 } }),
      );
      assert.equal(await env.cachedEntry(b), `1|{"dialogs":{"${a}":1}}`, "Redis missed the change");
      const [marked] = await env.sql("counters")`select redis_run_id from cache_generation`;
      assert.equal(marked!.redis_run_id, null, "the missed change marked the cache unsafe");

      // Back: Redis is stamped anew, so the entry it missed is never served, and reads refill it.
      await proxy.restore();
      await waitFor(async () => (await call(`${counters.url}/health/ready`)).status === 200, {
        what: "counters to be ready again",
      });
      await waitFor(async () => (await env.cachedEntry(b)) === null, {
        what: "a new generation, without the stale entry",
      });
      assert.deepEqual(
        await countersOf(counters, b),
        withNoGroups({ total: 2, dialogs: { [a]: 2 } }),
      );
      assert.equal(await env.cachedEntry(b), `2|{"dialogs":{"${a}":2}}`, "refilled at version 2");
    } finally {
      await proxy.close();
    }
  },
);
