/** SIGTERM under load: every 2xx is honoured, nothing in the outbox or in flight is lost, exit 0 quickly. */
import assert from "node:assert/strict";
import { verifyCounters } from "../scripts/verify.ts";
import { bearer, integrationTest, TEST_JWT_SECRET, type TestEnv, waitFor } from "../testing/env.ts";
import { freePort, managedProcess } from "../testing/processes.ts";

const root = new URL("../", import.meta.url).pathname;

function serviceProcess(env: TestEnv, kind: "dialogs" | "counters", n: number) {
  const port = freePort();
  const common = {
    PORT: String(port),
    NATS_URL: env.natsUrl,
    NATS_STREAM: env.stream,
    NATS_SUBJECT_PREFIX: env.prefix,
    JWT_SECRET: TEST_JWT_SECRET,
    LOG_LEVEL: "warn",
    NO_COLOR: "1",
  };
  return managedProcess({
    name: `${kind}-${n}`,
    port,
    command: Deno.execPath(),
    args: ["run", "--allow-all", `${root}${kind}/main.ts`],
    env: kind === "dialogs" ? { ...common, DATABASE_URL: env.dialogsDatabaseUrl } : {
      ...common,
      DATABASE_URL: env.countersDatabaseUrl,
      REDIS_URL: env.redisUrl,
      REDIS_KEY_PREFIX: env.redisPrefix,
    },
    logFile: `${Deno.makeTempDirSync()}/${kind}-${n}.log`,
    ready: async () => {
      await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/health/ready`)).ok, {
        timeoutMs: 30_000,
        what: `${kind}-${n} ready`,
      });
    },
  });
}

/** Sends from random users to `dialogsPort` until `stop` resolves; returns the accepted ids. */
async function loadUntil(dialogsPort: () => number, stop: Promise<void>) {
  const users = Array.from({ length: 8 }, () => crypto.randomUUID());
  const auth = new Map(await Promise.all(users.map(async (u) => [u, await bearer(u)] as const)));
  const accepted = new Set<string>();
  const unexpected: number[] = [];
  let done = false;
  stop.then(() => done = true);
  await Promise.all(users.map(async (from, i) => {
    const to = users[(i + 1) % users.length]!;
    while (!done) {
      try {
        const res = await fetch(`http://127.0.0.1:${dialogsPort()}/api/dialog/${to}/send`, {
          method: "POST",
          headers: { Authorization: auth.get(from)!, "Content-Type": "application/json" },
          body: JSON.stringify({ text: "under load" }),
        });
        const body = await res.json();
        if (res.status === 202) accepted.add(body.messageId);
        else {assert.ok(
            res.status === 503 || res.status >= 500 === false,
            `unexpected ${res.status}`,
          );}
      } catch {
        await new Promise((r) => setTimeout(r, 20)); // the server is gone; try again
      }
    }
  }));
  assert.deepEqual(unexpected, [], "every request that got an answer was accepted");
  return accepted;
}

async function allFinished(env: TestEnv, accepted: Set<string>) {
  await waitFor(async () => {
    const rows = await env.sql("dialogs")`select id, status from messages`;
    const done = rows.filter((r) => r.status !== "pending").map((r) => r.id);
    return [...accepted].every((id) => done.includes(id));
  }, { timeoutMs: 30_000, what: "every accepted send to finish" });
  const rows = await env.sql("dialogs")`select id, status from messages`;
  const byId = new Map(rows.map((r) => [r.id, r.status]));
  for (const id of accepted) assert.equal(byId.get(id), "committed", `accepted ${id} committed`);
  assert.deepEqual(
    (await verifyCounters(env.dialogsDatabaseUrl, env.countersDatabaseUrl)).drift,
    [],
  );
}

integrationTest(
  "shutdown: dialogs stopped by SIGTERM under load exits 0 quickly and loses no accepted send",
  async (env) => {
    const counters = serviceProcess(env, "counters", 1);
    const first = serviceProcess(env, "dialogs", 1);
    const second = serviceProcess(env, "dialogs", 2);
    await Promise.all([counters.start(), first.start()]);
    try {
      let port = first.port;
      const stop = Promise.withResolvers<void>();
      const load = loadUntil(() => port, stop.promise);
      await new Promise((r) => setTimeout(r, 1_500));
      const exit = await first.terminate();
      assert.equal(exit.code, 0);
      assert.ok(exit.ms < 10_000, `exited in ${exit.ms} ms`);
      await second.start();
      port = second.port;
      await new Promise((r) => setTimeout(r, 500));
      stop.resolve();
      const accepted = await load;
      assert.ok(accepted.size > 20, `load produced ${accepted.size} sends`);
      await allFinished(env, accepted);
    } finally {
      await Promise.all([counters, first, second].map((p) => p.terminate()));
    }
  },
);

integrationTest(
  "shutdown: counters stopped by SIGTERM under load exits 0 quickly and every send still commits",
  async (env) => {
    const dialogs = serviceProcess(env, "dialogs", 1);
    const first = serviceProcess(env, "counters", 1);
    const second = serviceProcess(env, "counters", 2);
    await Promise.all([dialogs.start(), first.start()]);
    try {
      const stop = Promise.withResolvers<void>();
      const load = loadUntil(() => dialogs.port, stop.promise);
      await new Promise((r) => setTimeout(r, 1_500));
      const exit = await first.terminate();
      assert.equal(exit.code, 0);
      assert.ok(exit.ms < 10_000, `exited in ${exit.ms} ms`);
      await second.start();
      await new Promise((r) => setTimeout(r, 500));
      stop.resolve();
      const accepted = await load;
      assert.ok(accepted.size > 20, `load produced ${accepted.size} sends`);
      await allFinished(env, accepted);
    } finally {
      await Promise.all([dialogs, first, second].map((p) => p.terminate()));
    }
  },
);
