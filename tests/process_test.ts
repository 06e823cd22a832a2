/** The services as real processes: a bad variable stops start-up with one line; SIGTERM stops cleanly. */
import assert from "node:assert/strict";
import { ensureStreams, streamNames } from "../shared/jetstream.ts";
import { integrationTest, waitFor } from "../testing/env.ts";

const root = new URL("../", import.meta.url).pathname;

function spawnService(service: "dialogs" | "counters", env: Record<string, string>) {
  return new Deno.Command(Deno.execPath(), {
    args: ["task", "-q", service],
    cwd: root,
    env: { NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

for (const service of ["dialogs", "counters"] as const) {
  Deno.test(`deno task ${service} stops with one line naming a bad variable`, async () => {
    const out = await spawnService(service, { PORT: "eighty", JWT_SECRET: "" }).output();
    const stderr = new TextDecoder().decode(out.stderr).trim();
    assert.equal(out.code, 1);
    assert.equal(stderr.split("\n").length, 1, stderr);
    assert.match(
      stderr,
      new RegExp(`^${service}: invalid environment variable PORT \\("eighty"\\)`),
    );
  });
}

integrationTest(
  "deno task dialogs refuses with one line a NATS_STREAM that holds another prefix's subjects",
  async (env) => {
    const nc = await env.nats();
    await ensureStreams(nc, streamNames(env.stream, env.prefix));
    const other = `${env.prefix}x`;
    const out = await spawnService("dialogs", {
      NATS_URL: env.natsUrl,
      NATS_STREAM: env.stream,
      NATS_SUBJECT_PREFIX: other,
      DATABASE_URL: env.dialogsDatabaseUrl,
      JWT_SECRET: "process-test-secret-0123456789",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr).trim();
    assert.equal(out.code, 1, stderr);
    assert.equal(
      stderr,
      `dialogs: NATS stream ${env.stream} holds subjects ["${env.prefix}.>"] of another ` +
        `deployment, not ["${other}.>"]: set NATS_STREAM to a stream of this deployment's own ` +
        `(or leave it unset) or NATS_SUBJECT_PREFIX to that stream's prefix`,
    );
  },
);

integrationTest("deno task counters and dialogs exit 0 on SIGTERM after serving", async (env) => {
  const ports = { dialogs: 18_000 + Math.floor(Math.random() * 2_000), counters: 0 };
  ports.counters = ports.dialogs + 1;
  const common = {
    NATS_URL: env.natsUrl,
    // NATS_STREAM unset: both derive env.stream from the prefix.
    NATS_SUBJECT_PREFIX: env.prefix,
    JWT_SECRET: "process-test-secret-0123456789",
  };
  const children = [
    spawnService("dialogs", {
      ...common,
      PORT: String(ports.dialogs),
      DATABASE_URL: env.dialogsDatabaseUrl,
    }),
    spawnService("counters", {
      ...common,
      PORT: String(ports.counters),
      DATABASE_URL: env.countersDatabaseUrl,
      REDIS_URL: env.redisUrl,
      REDIS_KEY_PREFIX: env.redisPrefix,
    }),
  ];
  try {
    for (const port of [ports.dialogs, ports.counters]) {
      await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/health/ready`)).ok, {
        timeoutMs: 20_000,
        what: `service on ${port} to be ready`,
      });
    }
  } finally {
    for (const child of children) child.kill("SIGTERM");
  }
  for (const child of children) {
    const out = await child.output();
    const logs = new TextDecoder().decode(out.stdout);
    assert.equal(out.code, 0, logs + new TextDecoder().decode(out.stderr));
    assert.match(logs, /"msg":"stopped cleanly"/);
  }
});

Deno.test("deno.json's tasks, the Dockerfile and the benchmark run the services with the same V8 flags", async () => {
  const { SERVICE_V8_FLAGS } = await import("../testing/processes.ts");
  const tasks = JSON.parse(await Deno.readTextFile(`${root}deno.json`)).tasks;
  for (const service of ["dialogs", "counters"]) {
    assert.ok(tasks[service].includes(` ${SERVICE_V8_FLAGS} `), `deno task ${service}`);
  }
  const dockerfile = await Deno.readTextFile(`${root}Dockerfile`);
  assert.ok(dockerfile.includes(`"${SERVICE_V8_FLAGS}"`), "the Dockerfile's ENTRYPOINT");
  const dev = await Deno.readTextFile(`${root}scripts/dev.ts`);
  assert.ok(dev.includes(`"${SERVICE_V8_FLAGS}"`), "deno task dev");
});
