/**
 * `deno task chaos`: two dialogs and two counters processes under a mixed load while faults are
 * injected (kill -9 of each instance, nats-server and Redis restarts, Postgres connections killed);
 * then it waits for quiet, checks the invariant, prints a table and exits 1 unless drift, lost and
 * counted-twice are all 0. It starts its own nats-server and redis-server and stops only what it started.
 */
import { jetstreamManager } from "@nats-io/jetstream";
import postgres from "postgres";
import { signToken } from "../shared/auth.ts";
import { quoteIdent } from "../shared/db.ts";
import { connectNats, durableName } from "../shared/jetstream.ts";
import { verifyCounters } from "../scripts/verify.ts";
import { fuzzContext, fuzzRequests } from "../testing/fuzz.ts";
import { runLoad } from "./load.ts";
import {
  denoProcess,
  findBinary,
  freePort,
  type ManagedProcess,
  managedProcess,
  waitForPort,
} from "../testing/processes.ts";

/** Options of a chaos run; every one is a command-line flag of the same name. */
export interface ChaosOptions {
  sends: number;
  rate: number;
  users: number;
  concurrency: number;
  seconds: number;
  faultEvery: number;
  quietSeconds: number;
  seed: number;
  /** Random and malformed requests fired at the instances after the load. */
  fuzz: number;
  json?: string;
}

const DEFAULTS: ChaosOptions = {
  sends: 5_000,
  rate: 40,
  users: 200,
  concurrency: 24,
  seconds: 180,
  faultEvery: 6,
  quietSeconds: 120,
  seed: 20261125,
  fuzz: 20_000,
};

/** Parses `--name value` flags over the defaults; throws on an unknown flag or a bad number. */
export function parseChaosArgs(args: string[]): ChaosOptions {
  const options: ChaosOptions = { ...DEFAULTS };
  for (let i = 0; i < args.length; i += 2) {
    const flag = args[i]!.replace(/^--/, "").replace(/-([a-z])/g, (_, c) => c.toUpperCase());
    const value = args[i + 1];
    if (!(flag in DEFAULTS) && flag !== "json") throw new Error(`unknown option ${args[i]}`);
    if (value === undefined) throw new Error(`option ${args[i]} needs a value`);
    if (flag === "json") options.json = value;
    else {
      const n = Number(value);
      if (!Number.isFinite(n) || n <= 0) {
        throw new Error(`option ${args[i]} needs a positive number`);
      }
      (options as unknown as Record<string, number>)[flag] = n;
    }
  }
  return options;
}

const SECRET = "chaos-secret-0123456789abcdef";

/** What a run measured; `ok` when drift, lost and counted twice are all 0. */
export interface ChaosReport {
  seed: number;
  seconds: number;
  sendsAccepted: number;
  committed: number;
  failed: number;
  reads: number;
  gaveUp: number;
  rejected: number;
  faults: Record<string, number>;
  fuzzRequests: number;
  fuzzServerErrors: number;
  drift: number;
  lost: number;
  countedTwice: number;
  quiet: boolean;
  ok: boolean;
}

/** Runs the whole chaos scenario and returns its report. */
export async function runChaos(options: ChaosOptions, log = console.log): Promise<ChaosReport> {
  const startedAt = Date.now();
  const id = crypto.randomUUID().replaceAll("-", "").slice(0, 10);
  const dir = await Deno.makeTempDir({ prefix: `chaos-${id}-` });
  const adminUrl = Deno.env.get("TEST_DATABASE_URL") ??
    "postgres://postgres@127.0.0.1:5432/postgres";
  const dbUrl = (name: string) =>
    Object.assign(new URL(adminUrl), { pathname: `/${name}` }).toString();
  const dialogsDb = `chaos_${id}_dialogs`, countersDb = `chaos_${id}_counters`;
  const prefix = `chaos${id}`, stream = `CHAOS${id}`;
  const natsPort = freePort(), redisPort = freePort();
  const natsUrl = `nats://127.0.0.1:${natsPort}`;
  const nats = managedProcess({
    name: "nats-server",
    port: natsPort,
    command: await findBinary("nats-server"),
    args: ["-a", "127.0.0.1", "-p", String(natsPort), "-js", "-sd", `${dir}/nats`],
    logFile: `${dir}/nats.log`,
  });
  const redis = managedProcess({
    name: "redis-server",
    port: redisPort,
    command: await findBinary("redis-server"),
    args: [
      "--port",
      String(redisPort),
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "no",
      "--dir",
      dir,
    ],
    logFile: `${dir}/redis.log`,
  });
  const common = {
    NATS_URL: natsUrl,
    NATS_STREAM: stream,
    NATS_SUBJECT_PREFIX: prefix,
    JWT_SECRET: SECRET,
    LOG_LEVEL: "warn",
  };
  const service = (kind: "dialogs" | "counters", n: number): ManagedProcess =>
    denoProcess({
      name: `${kind}-${n}`,
      script: `${kind}/main.ts`,
      env: kind === "dialogs" ? { ...common, DATABASE_URL: dbUrl(dialogsDb) } : {
        ...common,
        DATABASE_URL: dbUrl(countersDb),
        REDIS_URL: `redis://127.0.0.1:${redisPort}`,
        REDIS_KEY_PREFIX: `${prefix}:`,
        // Off: a repair would hide the drift this run exists to find.
        RECONCILE_INTERVAL_MS: "0",
      },
      logFile: `${dir}/${kind}-${n}.log`,
      readyPath: "/health/live",
    });
  const dialogs = [service("dialogs", 1), service("dialogs", 2)];
  const counters = [service("counters", 1), service("counters", 2)];
  const all = [nats, redis, ...dialogs, ...counters];
  const faults: Record<string, number> = {};
  const admin = postgres(adminUrl, { max: 2, onnotice: () => {} });

  try {
    log(
      `chaos: ${options.sends} sends at ${options.rate}/s from ${options.users} users; logs in ${dir}`,
    );
    await nats.start();
    await redis.start();
    await Promise.all([...dialogs, ...counters].map((p) => p.start()));

    const users = Array.from({ length: options.users }, () => crypto.randomUUID());
    const tokens = new Map(
      await Promise.all(users.map(async (u) => [u, await signToken(u, SECRET)] as const)),
    );
    const deadline = Date.now() + options.seconds * 1000;
    let loading = true;
    const loadDone = runLoad({
      dialogsUrls: dialogs.map((d) => `http://127.0.0.1:${d.port}`),
      users,
      tokens,
      sends: options.sends,
      rate: options.rate,
      readShare: 0.25,
      concurrency: options.concurrency,
      seed: options.seed,
      deadline,
    }).finally(() => loading = false);

    const restarting = new Map<ManagedProcess, Promise<void>>();
    // One restart per process at a time; a fault aimed at a process still restarting waits for it.
    const restart = async (p: ManagedProcess) => {
      await restarting.get(p);
      const run = (async () => {
        await p.kill();
        await sleep(300 + 1_200 * Math.random());
        await p.start();
      })();
      restarting.set(p, run);
      try {
        await run;
      } finally {
        if (restarting.get(p) === run) restarting.delete(p);
      }
    };
    // Interleaved so that even a short run meets every kind; restarts run in the background.
    const kill = (
      p: ManagedProcess,
    ): [string, () => Promise<void>] => [`kill -9 ${p.name}`, () => restart(p)];
    const injectors: [string, () => Promise<void>][] = [
      kill(dialogs[0]!),
      ["restart nats-server", () => restart(nats)],
      kill(counters[0]!),
      ["stop and flush redis", () => restart(redis)],
      ["kill postgres connections", async () => {
        await admin`select pg_terminate_backend(pid) from pg_stat_activity
                    where datname in (${dialogsDb}, ${countersDb}) and pid <> pg_backend_pid()`;
      }],
      kill(dialogs[1]!),
      kill(counters[1]!),
    ];
    let turn = 0;
    while (loading) {
      await sleep(options.faultEvery * 1000 * (0.5 + seededFraction(options.seed + turn)));
      if (!loading) break;
      const [kind, inject] = injectors[turn++ % injectors.length]!;
      const done = inject().catch((err) => log(`chaos: fault ${kind} failed: ${err.message}`));
      faults[kind] = (faults[kind] ?? 0) + 1;
      await Promise.race([done, sleep(0)]);
    }
    await Promise.all(restarting.values());
    const load = await loadDone;
    log(
      `chaos: load done (${load.accepted.size} sends accepted, ${load.reads} reads); waiting for quiet`,
    );

    for (const p of all) await p.start();
    const quiet = await waitForQuiet(
      dbUrl(dialogsDb),
      dbUrl(countersDb),
      natsUrl,
      { stream, prefix },
      options.quietSeconds * 1000,
    );

    const fuzz = await fireFuzz(options, {
      bases: {
        dialogs: dialogs.map((d) => `http://127.0.0.1:${d.port}`),
        counters: counters.map((c) => `http://127.0.0.1:${c.port}`),
      },
      users: users.slice(0, 16),
      messageIds: [...load.accepted.keys()].slice(0, 50),
    });
    const crashed = [...dialogs, ...counters].filter((p) => !p.running).map((p) => p.name);
    if (crashed.length) log(`chaos: crashed during fuzzing: ${crashed.join(", ")}`);
    // Valid sends among the fuzz requests start sagas too; the invariant is checked after them.
    const quietAgain = await waitForQuiet(
      dbUrl(dialogsDb),
      dbUrl(countersDb),
      natsUrl,
      { stream, prefix },
      options.quietSeconds * 1000,
    );
    const report = await check({
      dialogsUrl: dbUrl(dialogsDb),
      countersUrl: dbUrl(countersDb),
      countersBases: counters.map((c) => `http://127.0.0.1:${c.port}`),
      users,
      tokens,
      accepted: load.accepted,
    });
    const result: ChaosReport = {
      seed: options.seed,
      seconds: Math.round((Date.now() - startedAt) / 1000),
      sendsAccepted: load.accepted.size,
      committed: report.committed,
      failed: report.failed,
      reads: load.reads,
      gaveUp: load.gaveUp,
      rejected: load.rejected,
      faults,
      drift: report.drift,
      lost: report.lost,
      countedTwice: report.countedTwice,
      fuzzRequests: fuzz.requests,
      fuzzServerErrors: fuzz.serverErrors + crashed.length,
      quiet: quiet && quietAgain,
      ok: quiet && quietAgain && report.drift === 0 && report.lost === 0 &&
        report.countedTwice === 0 && fuzz.serverErrors === 0 && crashed.length === 0,
    };
    log(renderReport(result));
    if (options.json) {
      await Deno.writeTextFile(options.json, JSON.stringify(result, null, 2) + "\n");
    }
    return result;
  } finally {
    await Promise.all([...dialogs, ...counters].map((p) => p.terminate().catch(() => {})));
    await Promise.all([nats, redis].map((p) => p.kill().catch(() => {})));
    for (const db of [dialogsDb, countersDb]) {
      await admin.unsafe(`drop database if exists ${quoteIdent(db)} with (force)`).catch(() => {});
    }
    await admin.end();
    if (!Deno.env.get("CHAOS_KEEP_LOGS")) {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  }
}

/** Waits until no send is pending, both outboxes are empty and both consumers have acked everything. */
async function waitForQuiet(
  dialogsUrl: string,
  countersUrl: string,
  natsUrl: string,
  names: { stream: string; prefix: string },
  timeoutMs: number,
): Promise<boolean> {
  const d = postgres(dialogsUrl, { max: 1, onnotice: () => {} });
  const c = postgres(countersUrl, { max: 1, onnotice: () => {} });
  const nc = await connectNats(natsUrl, "chaos-quiet");
  try {
    const jsm = await jetstreamManager(nc);
    const deadline = Date.now() + timeoutMs;
    let quietChecks = 0;
    while (Date.now() < deadline) {
      try {
        const [pending] = await d`select count(*)::int as n from messages where status = 'pending'`;
        const [dOut] = await d`select count(*)::int as n from outbox where sent_at is null`;
        const [cOut] = await c`select count(*)::int as n from outbox where sent_at is null`;
        let busy = pending!.n + dOut!.n + cOut!.n;
        for (const service of ["dialogs", "counters"] as const) {
          const info = await jsm.consumers.info(names.stream, durableName(names.prefix, service));
          busy += info.num_pending + info.num_ack_pending;
        }
        quietChecks = busy === 0 ? quietChecks + 1 : 0;
        if (quietChecks >= 3) return true;
      } catch {
        quietChecks = 0;
      }
      await sleep(500);
    }
    return false;
  } finally {
    await nc.close();
    await d.end();
    await c.end();
  }
}

/** Compares every counter, in Postgres and as served, with the truth in the dialogs database. */
async function check(input: {
  dialogsUrl: string;
  countersUrl: string;
  countersBases: string[];
  users: string[];
  tokens: Map<string, string>;
  accepted: Map<string, { from: string; to: string }>;
}) {
  const d = postgres(input.dialogsUrl, { max: 1, onnotice: () => {} });
  try {
    const rows = await d<{ id: string; status: string }[]>`select id, status from messages`;
    const status = new Map(rows.map((r) => [r.id, r.status]));
    let committed = 0, failed = 0, lost = 0;
    for (const id of input.accepted.keys()) {
      const s = status.get(id);
      if (s === "committed") committed++;
      else if (s === "failed") failed++;
      else lost++;
    }
    const truth = new Map<string, number>();
    for (
      const t of await d<{ pair: string; n: number }[]>`
        select recipient_id || '/' || sender_id as pair, count(*)::int as n from messages
        where status = 'committed' and read_at is null group by 1`
    ) truth.set(t.pair, t.n);
    const { drift: stored } = await verifyCounters(input.dialogsUrl, input.countersUrl);
    const bad = new Set(stored.map((x) => `${x.userId}/${x.peerId}`));
    const twice = new Set(
      stored.filter((x) => x.actual > x.expected).map((x) => `${x.userId}/${x.peerId}`),
    );
    for (const user of input.users) {
      for (const base of input.countersBases) {
        const res = await fetch(`${base}/api/counters`, {
          headers: { Authorization: `Bearer ${input.tokens.get(user)}` },
        });
        const served = (await res.json()).dialogs as Record<string, number>;
        const peers = new Set([
          ...Object.keys(served),
          ...[...truth.keys()].filter((k) => k.startsWith(`${user}/`)).map((k) => k.split("/")[1]!),
        ]);
        for (const peer of peers) {
          const expected = truth.get(`${user}/${peer}`) ?? 0, actual = served[peer] ?? 0;
          if (actual !== expected) bad.add(`${user}/${peer}`);
          if (actual > expected) twice.add(`${user}/${peer}`);
        }
      }
    }
    return { committed, failed, lost, drift: bad.size, countedTwice: twice.size };
  } finally {
    await d.end();
  }
}

/** Fires `options.fuzz` fuzz requests at the instances, 16 at a time; counts 5xx answers. */
async function fireFuzz(
  options: ChaosOptions,
  input: { bases: Record<"dialogs" | "counters", string[]>; users: string[]; messageIds: string[] },
) {
  const ctx = await fuzzContext(SECRET, input.users, input.messageIds);
  const requests = fuzzRequests(options.seed, options.fuzz, ctx);
  let serverErrors = 0, next = 0;
  await Promise.all(Array.from({ length: 16 }, async () => {
    for (let i = next++; i < requests.length; i = next++) {
      const req = requests[i]!;
      const bases = input.bases[req.service];
      try {
        const res = await fetch(`${bases[i % bases.length]}${req.path}`, {
          method: req.method,
          headers: req.headers,
          body: req.body as BodyInit | undefined,
          signal: AbortSignal.timeout(10_000),
        });
        await res.body?.cancel();
        if (res.status >= 500) serverErrors++;
      } catch {
        serverErrors++; // no answer at all
      }
    }
  }));
  return { requests: requests.length, serverErrors };
}

/** The report as a table. */
export function renderReport(r: ChaosReport): string {
  const rows: [string, string | number][] = [
    ["sends accepted (202)", r.sendsAccepted],
    ["committed", r.committed],
    ["failed (refused or timed out)", r.failed],
    ["reads", r.reads],
    ["requests given up after retries", r.gaveUp],
    ["requests rejected (4xx)", r.rejected],
    ...Object.entries(r.faults).map(([k, v]) => [`fault: ${k}`, v] as [string, number]),
    ["fuzz requests (random and malformed)", r.fuzzRequests],
    ["fuzz answers 5xx or crashed processes", r.fuzzServerErrors],
    ["quiet reached", r.quiet ? "yes" : "NO"],
    ["drift (pairs wrong in Postgres or as served)", r.drift],
    ["lost (accepted, neither committed nor failed)", r.lost],
    ["counted twice (pairs over the truth)", r.countedTwice],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  return [
    `| ${"what".padEnd(width)} | value |`,
    `| ${"-".repeat(width)} | ----- |`,
    ...rows.map(([k, v]) => `| ${k.padEnd(width)} | ${String(v).padStart(5)} |`),
    `chaos: ${r.ok ? "PASS" : "FAIL"} in ${r.seconds} s (seed ${r.seed})`,
  ].join("\n");
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function seededFraction(n: number): number {
  const x = Math.sin(n * 12.9898) * 43758.5453;
  return x - Math.floor(x);
}

if (import.meta.main) {
  let options: ChaosOptions;
  try {
    options = parseChaosArgs(Deno.args);
  } catch (err) {
    console.error(`chaos: ${(err as Error).message}`);
    console.error(
      "usage: deno task chaos [--sends N] [--rate N] [--users N] [--concurrency N] [--seconds N] " +
        "[--fault-every S] [--quiet-seconds N] [--seed N] [--fuzz N] [--json FILE]",
    );
    Deno.exit(2);
  }
  await waitForPort(5432, 1_000).catch(() => {
    console.error("chaos: Postgres must answer on 127.0.0.1:5432 (or set TEST_DATABASE_URL)");
    Deno.exit(2);
  });
  const report = await runChaos(options);
  Deno.exit(report.ok ? 0 : 1);
}
