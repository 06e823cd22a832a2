/** SIGTERM under load: every 2xx is honoured, nothing in the outbox or in flight is lost, exit 0 quickly. */
import assert from "node:assert/strict";
import { verifyCounters } from "../scripts/verify.ts";
import { bearer, integrationTest, TEST_JWT_SECRET, type TestEnv, waitFor } from "../testing/env.ts";
import { denoProcess } from "../testing/processes.ts";

function serviceProcess(env: TestEnv, kind: "dialogs" | "counters", n: number) {
  const common = {
    NATS_URL: env.natsUrl,
    NATS_STREAM: env.stream,
    NATS_SUBJECT_PREFIX: env.prefix,
    JWT_SECRET: TEST_JWT_SECRET,
    LOG_LEVEL: "warn",
  };
  return denoProcess({
    name: `${kind}-${n}`,
    script: `${kind}/main.ts`,
    env: kind === "dialogs" ? { ...common, DATABASE_URL: env.dialogsDatabaseUrl } : {
      ...common,
      DATABASE_URL: env.countersDatabaseUrl,
      REDIS_URL: env.redisUrl,
      REDIS_KEY_PREFIX: env.redisPrefix,
    },
    logFile: `${Deno.makeTempDirSync()}/${kind}-${n}.log`,
    readyPath: "/health/ready",
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

/**
 * Runs a load of sends, stops the first `victim` instance with SIGTERM in the middle of it, starts a
 * second one, and checks: exit 0 within 10 s, and every accepted send committed with no drift.
 */
async function sigtermUnderLoad(env: TestEnv, victim: "dialogs" | "counters") {
  const other = serviceProcess(env, victim === "dialogs" ? "counters" : "dialogs", 1);
  const first = serviceProcess(env, victim, 1);
  const second = serviceProcess(env, victim, 2);
  const dialogs = victim === "dialogs" ? first : other;
  await Promise.all([other.start(), first.start()]);
  try {
    let port = dialogs.port;
    const stop = Promise.withResolvers<void>();
    const load = loadUntil(() => port, stop.promise);
    await new Promise((r) => setTimeout(r, 1_500));
    const exit = await first.terminate();
    assert.equal(exit.code, 0);
    assert.ok(exit.ms < 10_000, `exited in ${exit.ms} ms`);
    await second.start();
    if (victim === "dialogs") port = second.port;
    await new Promise((r) => setTimeout(r, 500));
    stop.resolve();
    const accepted = await load;
    assert.ok(accepted.size > 20, `load produced ${accepted.size} sends`);
    await allFinished(env, accepted);
  } finally {
    await Promise.all([other, first, second].map((p) => p.terminate()));
  }
}

integrationTest(
  "shutdown: dialogs stopped by SIGTERM under load exits 0 quickly and loses no accepted send",
  (env) => sigtermUnderLoad(env, "dialogs"),
);

integrationTest(
  "shutdown: counters stopped by SIGTERM under load exits 0 quickly and every send still commits",
  (env) => sigtermUnderLoad(env, "counters"),
);
