/** `deno task verify` against real databases: exit 0 without drift, 1 with it. */
import assert from "node:assert/strict";
import { openRedisCache } from "../counters/redis_cache.ts";
import { integrationTest, type Service, TEST_JWT_SECRET, waitFor } from "../testing/env.ts";
import { send, waitForStatus } from "../testing/clients.ts";

/** Sends a message from `a` to `b` and waits until it is committed. */
async function sendCommitted(dialogs: Service, a: string, b: string) {
  const sent = await send(dialogs, a, b, "count me");
  await waitForStatus(dialogs, a, sent.body.messageId, "committed");
}

async function runVerify(
  dialogsUrl: string,
  countersUrl: string,
  extra: Record<string, string> = {},
) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["task", "-q", "verify"],
    cwd: new URL("../", import.meta.url).pathname,
    env: {
      DIALOGS_DATABASE_URL: dialogsUrl,
      COUNTERS_DATABASE_URL: countersUrl,
      NO_COLOR: "1",
      ...extra,
    },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
}

integrationTest(
  "deno task verify exits 0 when counters equal the truth and 1 with the drift printed",
  async (env) => {
    const dialogs = await env.startDialogs();
    await env.startCounters();
    const a = crypto.randomUUID(), b = crypto.randomUUID();
    await sendCommitted(dialogs, a, b);
    const clean = await runVerify(env.dialogsDatabaseUrl, env.countersDatabaseUrl);
    assert.equal(clean.code, 0, clean.stdout + clean.stderr);
    assert.match(clean.stdout, /no drift/);

    await env.sql("counters")`update unread_counters set unread = 5 where user_id = ${b}`;
    const drifted = await runVerify(env.dialogsDatabaseUrl, env.countersDatabaseUrl);
    assert.equal(drifted.code, 1);
    assert.match(drifted.stdout, new RegExp(`${b}\\s+${a}\\s+1\\s+5`));
    assert.match(drifted.stdout, /drift in 1 counter/);
  },
);

Deno.test("deno task verify exits 2 with one line when a database cannot be read", async () => {
  const r = await runVerify(
    "postgres://postgres@127.0.0.1:1/dialogs",
    "postgres://postgres@127.0.0.1:1/counters",
  );
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^verify: cannot read/);
});

integrationTest(
  "deno task verify with COUNTERS_URLS reports each count an instance serves wrong, and none on a correct system",
  async (env) => {
    const dialogs = await env.startDialogs();
    const first = await env.startCounters();
    const a = crypto.randomUUID(), b = crypto.randomUUID();
    await sendCommitted(dialogs, a, b);
    const secret = { JWT_SECRET: TEST_JWT_SECRET };
    const clean = await runVerify(env.dialogsDatabaseUrl, env.countersDatabaseUrl, {
      ...secret,
      COUNTERS_URLS: first.url,
    });
    assert.equal(clean.code, 0, clean.stdout + clean.stderr);
    assert.match(clean.stdout, /no drift .*served counters of 2 users on 1 instance/);

    // A Redis entry newer than anything counters wrote, with a count the truth does not have; an
    // instance started now has nothing in process and serves it.
    const cache = openRedisCache({ url: env.redisUrl, keyPrefix: env.redisPrefix });
    try {
      // Written in the generation counters confirmed, as a Redis that lies would hold it.
      const stamp = await waitFor(() => env.redis().get(`${env.redisPrefix}generation`), {
        what: "a cache generation",
      });
      assert.deepEqual(
        await cache.setManyIfNewer(stamp, [{
          key: `user:${b}`,
          state: { version: 1e12, dialogs: { [a]: 7 } },
        }]),
        [true],
      );
    } finally {
      await cache.close();
    }
    const second = await env.startCounters();
    const lied = await runVerify(env.dialogsDatabaseUrl, env.countersDatabaseUrl, {
      ...secret,
      COUNTERS_URLS: `${first.url},${second.url}/`,
    });
    assert.equal(lied.code, 1, lied.stdout + lied.stderr);
    assert.match(lied.stdout, new RegExp(`${second.url}\\s+${b}\\s+${a}\\s+1\\s+7`));
    assert.doesNotMatch(lied.stdout, /drift in \d+ counter/, "the tables are right");
    assert.match(lied.stdout, /served count\(s\) differ from the truth/);
  },
);

integrationTest(
  "deno task verify exits 2 with one line when an instance in COUNTERS_URLS cannot be read or is no URL",
  async (env) => {
    await env.startDialogs();
    await env.startCounters();
    const r = await runVerify(env.dialogsDatabaseUrl, env.countersDatabaseUrl, {
      COUNTERS_URLS: "http://127.0.0.1:1",
    });
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.match(r.stderr, /^verify: cannot read http:\/\/127\.0\.0\.1:1\/api\/counters/);
    const bad = await runVerify(env.dialogsDatabaseUrl, env.countersDatabaseUrl, {
      COUNTERS_URLS: "ftp://x",
    });
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^verify: invalid environment variable COUNTERS_URLS/);
  },
);
