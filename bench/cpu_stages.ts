/**
 * `deno task bench:cpu` (issue 15): where a send's CPU goes, in µs of CPU per send, in each
 * process and, inside dialogs and counters, per stage of the saga; beside (e), the same sends
 * without a saga in one process (bench/single_send_server.ts), measured the same way.
 *
 * Method (issue 5's): user + system CPU time from `/proc/<pid>/stat` of each process over a send
 * run, divided by the sends completed. The run has its own nats-server and redis-server, so their
 * CPU is this run's alone; Postgres is the backends of the run's databases (`pg_stat_activity`),
 * wrk is this process's reaped children. Inside dialogs, counters and (e), a V8 CPU profile (Deno's
 * `--cpu-prof`) taken over the whole life of the process is cut to the send run's window, each
 * sample is given the stage of the innermost frame of this repository's code on its stack (or of a
 * known library when no such frame is there), and the main thread's measured CPU is split in the
 * samples' proportions. CPU spent off the main thread (V8's GC helpers, I/O threads) is its own row.
 *
 * Options: `--seconds N` (10) per measured run; `--no-profile` runs the services without the
 * profiler and prints the process table only; `--top N` prints the N functions with the most self
 * time in each profiled process; `--keep-profiles` keeps the `.cpuprofile` files.
 */
import postgres from "postgres";
import { signToken } from "../shared/auth.ts";
import { findBinary, freePort, managedProcess } from "../testing/processes.ts";
import { startPrivateRedis } from "../testing/redis_server.ts";
import { benchUsers } from "./seed.ts";
import { type BenchWorld, planWorld, startSingle, tearDownWorld } from "./world.ts";
import { sagaFigures, sendLoad, warmTokens } from "./write_path.ts";

const ROOT = new URL("../", import.meta.url).href;

/** Stages of a send inside dialogs and counters, in the table's order. */
export const STAGES = [
  "HTTP, Hono, auth, validation",
  "send transaction",
  "outbox relay (publish)",
  "consumer (pull, decode, ack)",
  "counting transaction",
  "reply apply",
  "live updates, cache (incl. Redis client)",
  "logging, metrics",
  "postgres.js, no caller on the stack (socket writes, answers parsed)",
  "NATS client, no caller on the stack (socket, protocol)",
  "GC (on the main thread)",
  "Deno runtime, native ((program): I/O, HTTP, ops)",
  "other JS (timers, node compat, project code elsewhere)",
] as const;
/** A stage of a send. */
export type Stage = typeof STAGES[number];

/** One frame of a V8 CPU profile. */
export interface CallFrame {
  functionName: string;
  url: string;
}

/** A V8 CPU profile (`.cpuprofile`, what `--cpu-prof` writes); times in µs of a monotonic clock. */
export interface CpuProfile {
  nodes: { id: number; callFrame: CallFrame; children?: number[] }[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

const [
  HTTP,
  SEND,
  RELAY,
  CONSUMER,
  COUNTING,
  REPLY,
  CACHE,
  TELEMETRY,
  PG,
  NATS,
  GC,
  NATIVE,
  OTHER,
] = STAGES;

/**
 * The stage a frame of this repository's code (`path` relative to its root) belongs to, "pass" for
 * helpers whose callers decide (transactions, events, batching), undefined for no such frame.
 */
export function repoStage(path: string, fn: string): Stage | "pass" | undefined {
  const [dir = "", file = ""] = path.split("/");
  if (!["dialogs", "counters", "shared", "bench"].includes(dir)) return undefined;
  if (
    ["shared/db.ts", "shared/retry.ts", "shared/events.ts", "shared/jetstream.ts"].includes(path) ||
    ["shared/group_commit.ts", "shared/periodic.ts", "shared/shutdown.ts"].includes(path) ||
    (path === "shared/outbox.ts" && /^(enqueueEvents?|outboxTransaction)$/.test(fn))
  ) return "pass";
  if (path === "shared/outbox.ts" || path === "shared/service/relay.ts") return RELAY;
  if (
    ["shared/log.ts", "shared/metrics.ts", "shared/http/request_log.ts"].includes(path) ||
    path === "shared/service/telemetry.ts"
  ) return TELEMETRY;
  if (
    ["shared/consumer.ts", "shared/service/consumer.ts", "shared/dead_letters.ts"].includes(path)
  ) return CONSUMER;
  if (
    path.startsWith("shared/http/") ||
    ["shared/auth.ts", "shared/errors.ts", "shared/openapi.ts"].includes(path) ||
    ["shared/service/serve.ts", "counters/app.ts", "counters/fast_read.ts"].includes(path) ||
    ["dialogs/app.ts", "dialogs/group_routes.ts", "dialogs/schemas.ts"].includes(path) ||
    ["dialogs/messages.ts", "dialogs/web.ts"].includes(path)
  ) return HTTP;
  if (path === "dialogs/dialog_events.ts" || path === "dialogs/saga.ts") return REPLY;
  if (path === "dialogs/message_store.ts") {
    return /repl|finish|decideOn|cancel|raiseLast/i.test(fn) ? REPLY : SEND;
  }
  if (dir === "dialogs" && (/send/.test(file) || file === "group_store.ts")) return SEND;
  if (path === "counters/counter_store.ts") {
    return /^(load|read|get|fetch)/i.test(fn) ? CACHE : COUNTING;
  }
  if (
    ["counters/counter_events.ts", "counters/saga.ts", "counters/send_batch.ts"].includes(path) ||
    path === "counters/counters.ts"
  ) return COUNTING;
  if (
    [
      "live_updates.ts",
      "local_cache.ts",
      "redis_cache.ts",
      "coherence.ts",
      "cache_keys.ts",
      "live_stream.ts",
      "sse_streams.ts",
      "drift.ts",
      "reconcile.ts",
    ].includes(file) && dir === "counters"
  ) return CACHE;
  if (dir === "bench" && file === "single_send_server.ts") {
    return /^(sendInOneTransaction|statements)$/.test(fn) ? SEND : HTTP;
  }
  return undefined;
}

/** The stage of a library or runtime frame, when no frame of this repository decides. */
export function libraryStage(frame: CallFrame): Stage | undefined {
  const { url, functionName } = frame;
  if (functionName === "(garbage collector)") return GC;
  if (functionName === "(program)") return NATIVE;
  if (/\/postgres\/\d/.test(url)) return PG;
  if (/\/@nats-io\//.test(url)) return NATS;
  if (/\/ioredis\/\d/.test(url)) return CACHE;
  if (/\/(hono|zod|@hono\/[^/]+)\/\d/.test(url) || /^ext:deno_(http|fetch)\//.test(url)) {
    return HTTP;
  }
  return undefined;
}

/**
 * The stage of a sample whose stack is `frames`, innermost first: the innermost frame of this
 * repository's code that decides, else the innermost library or runtime frame that does, else
 * "other".
 */
export function stageOf(frames: CallFrame[], root = ROOT): Stage | "idle" {
  if (frames[0]?.functionName === "(idle)") return "idle";
  let library: Stage | undefined;
  for (const frame of frames) {
    if (frame.url.startsWith(root)) {
      const stage = repoStage(frame.url.slice(root.length), frame.functionName);
      if (stage && stage !== "pass") return stage;
    }
    library ??= libraryStage(frame);
  }
  return library ?? OTHER;
}

/** Each stage's sampled time (µs) in `profile` between `fromUs` and `toUs`, and the idle time. */
export function profileStages(
  profile: CpuProfile,
  window: { fromUs: number; toUs: number },
  root = ROOT,
): { stages: Map<Stage, number>; idleUs: number; leaves: Map<string, number> } {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const stageOfNode = new Map<number, Stage | "idle">();
  const nodeStage = (id: number) => {
    let stage = stageOfNode.get(id);
    if (!stage) {
      const frames: CallFrame[] = [];
      for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
        frames.push(byId.get(at)!.callFrame);
      }
      stage = stageOf(frames, root);
      stageOfNode.set(id, stage);
    }
    return stage;
  };
  const stages = new Map<Stage, number>();
  // Self time by leaf frame ("stage: function (file)"), for a closer look.
  const leaves = new Map<string, number>();
  let idleUs = 0;
  // A sample lasts from its timestamp to the next one's.
  let t = profile.startTime;
  const times = profile.timeDeltas.map((d) => t += d);
  for (let i = 0; i + 1 < profile.samples.length; i++) {
    const start = times[i]!, end = times[i + 1]!;
    const us = Math.min(end, window.toUs) - Math.max(start, window.fromUs);
    if (us <= 0) continue;
    const stage = nodeStage(profile.samples[i]!);
    if (stage === "idle") {
      idleUs += us;
      continue;
    }
    stages.set(stage, (stages.get(stage) ?? 0) + us);
    const leaf = byId.get(profile.samples[i]!)!.callFrame;
    const name = `${stage}: ${leaf.functionName || "(anonymous)"} (${
      leaf.url.split("/").pop() || "native"
    })`;
    leaves.set(name, (leaves.get(name) ?? 0) + us);
  }
  return { stages, idleUs, leaves };
}

/** user + system CPU (clock ticks) and that of reaped children, from a `/proc/<pid>/stat` line. */
export function parseProcStat(text: string): { ticks: number; childTicks: number } {
  // The command name (field 2) is in parentheses and may hold spaces; fields 14–17 follow it.
  const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
  const n = (i: number) => Number(rest[i - 3]);
  return { ticks: n(14) + n(15), childTicks: n(16) + n(17) };
}

const TICK_US = 1_000_000 / 100; // CLK_TCK is 100 on Linux

async function procTicks(path: string): Promise<{ ticks: number; childTicks: number }> {
  const text = await Deno.readTextFile(path).catch(() => "");
  return text ? parseProcStat(text) : { ticks: 0, childTicks: 0 };
}

/** Now on the clock V8's profiles use (CLOCK_MONOTONIC), in µs; /proc/uptime has 10 ms steps. */
async function monotonicUs(): Promise<number> {
  return Number((await Deno.readTextFile("/proc/uptime")).split(" ")[0]) * 1_000_000;
}

/** A thread's kind from its name (`/proc/<pid>/task/<tid>/comm`): the name without its number. */
export function threadKind(comm: string): string {
  const kind = comm.replace(/[-_ ]?\d+$/, "") || "unnamed";
  return THREAD_KINDS[kind] ?? kind;
}

const THREAD_KINDS: Record<string, string> = {
  "V8 DefaultWorke": "V8 workers (concurrent GC, compiler)",
  "v8:ProfEvntProc": "the profiler itself (absent without --cpu-prof)",
  "tokio-runtime-w": "tokio workers",
};

/** Processes whose CPU a run counts, by name: a pid each, or many (Postgres backends). */
type Watched = Record<string, () => Promise<number[]>>;

/** CPU µs of each watched process (main thread apart for `threads`) and of this one's children. */
async function snapshot(watched: Watched, threads: Record<string, number>) {
  const cpu: Record<string, Map<number, number>> = {};
  for (const [name, pids] of Object.entries(watched)) {
    cpu[name] = new Map();
    for (const pid of await pids()) {
      cpu[name].set(pid, (await procTicks(`/proc/${pid}/stat`)).ticks * TICK_US);
    }
  }
  const main: Record<string, number> = {};
  // Every thread's CPU by its name (V8's workers, tokio's, ...), per profiled process.
  const named: Record<string, Map<string, number>> = {};
  for (const [name, pid] of Object.entries(threads)) {
    main[name] = (await procTicks(`/proc/${pid}/task/${pid}/stat`)).ticks * TICK_US;
    named[name] = new Map();
    for (const task of Deno.readDirSync(`/proc/${pid}/task`)) {
      if (task.name === String(pid)) continue;
      const comm = threadKind(
        (await Deno.readTextFile(`/proc/${pid}/task/${task.name}/comm`).catch(() => "")).trim(),
      );
      const us = (await procTicks(`/proc/${pid}/task/${task.name}/stat`)).ticks * TICK_US;
      named[name].set(`${comm}\0${task.name}`, us);
    }
  }
  const children = (await procTicks("/proc/self/stat")).childTicks * TICK_US;
  return { cpu, main, named, children, atUs: await monotonicUs() };
}

type Snapshot = Awaited<ReturnType<typeof snapshot>>;

/** CPU µs per process between two snapshots; a pid new in `b` counts from zero. */
function cpuBetween(a: Snapshot, b: Snapshot) {
  const total: Record<string, number> = {};
  for (const [name, pids] of Object.entries(b.cpu)) {
    total[name] = [...pids].reduce((sum, [pid, us]) => sum + us - (a.cpu[name]?.get(pid) ?? 0), 0);
  }
  const main: Record<string, number> = {};
  for (const name of Object.keys(b.main)) main[name] = b.main[name]! - a.main[name]!;
  const threads: Record<string, Map<string, number>> = {};
  for (const [name, tasks] of Object.entries(b.named)) {
    threads[name] = new Map();
    for (const [key, us] of tasks) {
      const kind = key.split("\0")[0]!;
      const delta = us - (a.named[name]?.get(key) ?? 0);
      threads[name].set(kind, (threads[name].get(kind) ?? 0) + delta);
    }
  }
  return { total, main, threads, wrk: b.children - a.children };
}

/** What one measured send run gave. */
export interface SendRunCpu {
  sends: number;
  seconds: number;
  /** µs of CPU per send by process ("wrk" included). */
  perSend: Record<string, number>;
  /** Per profiled process: µs of CPU per send by stage, and off the main thread. */
  stages: Record<string, { stages: Map<Stage, number>; offMainThread: Map<string, number> }>;
}

/** The process table: µs of CPU per send in (d) and (e). */
export function processTable(d: SendRunCpu, e: SendRunCpu): string {
  const names = [...new Set([...Object.keys(d.perSend), ...Object.keys(e.perSend)])];
  const cell = (r: SendRunCpu, name: string) =>
    r.perSend[name] === undefined ? "" : r.perSend[name].toFixed(0);
  const sum = (r: SendRunCpu) => Object.values(r.perSend).reduce((a, b) => a + b, 0);
  return [
    "| process | (d) saga, µs CPU/send | (e) no saga, µs CPU/send |",
    "| --- | ---: | ---: |",
    ...names.map((n) => `| ${n} | ${cell(d, n)} | ${cell(e, n)} |`),
    `| **all processes** | **${sum(d).toFixed(0)}** | **${sum(e).toFixed(0)}** |`,
    `| sends completed (per second) | ${d.sends} (${
      (d.sends / d.seconds).toFixed(0)
    }/s) | ${e.sends} (${(e.sends / e.seconds).toFixed(0)}/s) |`,
  ].join("\n");
}

/** The stage table: µs of CPU per send by stage (rows) and profiled process (columns). */
export function stageTable(run: SendRunCpu): string {
  const names = Object.keys(run.stages);
  const rows = STAGES.map((stage) =>
    `| ${stage} | ${
      names.map((n) => (run.stages[n]!.stages.get(stage) ?? 0).toFixed(0)).join(" | ")
    } |`
  );
  // Threads that used no measurable CPU in any process are left out.
  const kinds = [...new Set(names.flatMap((n) => [...run.stages[n]!.offMainThread.keys()]))]
    .filter((kind) => names.some((n) => (run.stages[n]!.offMainThread.get(kind) ?? 0) >= 0.5));
  const off = kinds.map((kind) =>
    `| off the main thread: ${kind} | ${
      names.map((n) => (run.stages[n]!.offMainThread.get(kind) ?? 0).toFixed(0)).join(" | ")
    } |`
  );
  const total = names.map((n) => `**${(run.perSend[n] ?? 0).toFixed(0)}**`).join(" | ");
  return [
    `| stage (µs CPU/send) | ${names.join(" | ")} |`,
    `| --- | ${names.map(() => "---:").join(" | ")} |`,
    ...rows,
    ...off,
    `| **whole process** | ${total} |`,
  ].join("\n");
}

/** Splits a profiled process's main-thread CPU in its samples' proportions. */
export function splitByStage(
  sampled: Map<Stage, number>,
  mainThreadUsPerSend: number,
): Map<Stage, number> {
  const busy = [...sampled.values()].reduce((a, b) => a + b, 0);
  return new Map(
    [...sampled].map(([stage, us]) => [stage, busy ? (us / busy) * mainThreadUsPerSend : 0]),
  );
}

/** Transactions and rows written so far in each of `dbs` (`pg_stat_database`). */
async function dbActivity(admin: postgres.Sql, dbs: string[]) {
  const rows = await admin<{ datname: string; xacts: number; written: number }[]>`
    select datname, (xact_commit + xact_rollback)::float8 as xacts,
           (tup_inserted + tup_updated + tup_deleted)::float8 as written
    from pg_stat_database where datname = any(${dbs})`;
  return new Map(rows.map((r) => [r.datname, r]));
}

/** The database table: transactions and rows written per send, per database. */
export function databaseTable(rows: { what: string; xacts: number; written: number }[]): string {
  return [
    "| database | transactions/send | rows written/send |",
    "| --- | ---: | ---: |",
    ...rows.map((r) => `| ${r.what} | ${r.xacts.toFixed(2)} | ${r.written.toFixed(2)} |`),
  ].join("\n");
}

/** (e)'s process, in the tables. */
const E = "(e) single process";

const log = (msg: string) =>
  console.error(`bench:cpu ${new Date().toISOString().slice(11, 19)}: ${msg}`);

async function main() {
  const option = (name: string, fallback: number) =>
    Deno.args.includes(name) ? Number(Deno.args[Deno.args.indexOf(name) + 1]) : fallback;
  const seconds = option("--seconds", 10);
  const top = option("--top", 0);
  const keep = Deno.args.includes("--keep-profiles");
  // Without the profiler: the process table only, free of the profiler's own cost.
  const profiled = !Deno.args.includes("--no-profile");
  if (!(seconds > 0)) throw new Error("--seconds must be positive");
  await findBinary("wrk");
  const dir = await Deno.makeTempDir({ prefix: "bench-cpu-" });
  // Private brokers: their CPU is this run's alone.
  const natsPort = freePort();
  const nats = managedProcess({
    name: "nats-server",
    port: natsPort,
    command: await findBinary("nats-server"),
    args: ["-a", "127.0.0.1", "-p", String(natsPort), "-js", "-sd", `${dir}/nats`],
    logFile: `${dir}/nats.log`,
  });
  await nats.start();
  const redis = await startPrivateRedis(`${dir}/redis`);
  Deno.env.set("TEST_NATS_URL", `nats://127.0.0.1:${natsPort}`);
  Deno.env.set("TEST_REDIS_URL", redis.url);
  const profiles = `${dir}/profiles`;
  const world: BenchWorld = await planWorld({
    serviceFlags: profiled ? ["--cpu-prof", `--cpu-prof-dir=${profiles}`] : [],
  });
  let down: Promise<void> | undefined;
  const tearDown = () =>
    down ??= (async () => {
      await tearDownWorld(world);
      await redis.terminate().catch(() => {});
      await nats.terminate().catch(() => {});
      if (keep) log(`profiles kept in ${dir}/profiles`);
      else await Deno.remove(dir, { recursive: true }).catch(() => {});
    })();
  const stop = () => tearDown().finally(() => Deno.exit(130));
  Deno.addSignalListener("SIGINT", stop);
  try {
    log("starting dialogs and counters (profiled), (e), a private nats-server and redis-server");
    await Promise.all([world.counters.start(), world.dialogs.start(), startSingle(world)]);
    const url = (p: { port: number }) => `http://127.0.0.1:${p.port}`;
    const users = benchUsers(2_000, 0).light;
    const tokens = new Map(
      await Promise.all(
        users.map(async (u) => [u, await signToken(u, world.secret, 3600)] as const),
      ),
    );
    const dSql = postgres(world.dbUrl(world.dbs.dialogs), { max: 1, onnotice: () => {} });
    const eSql = postgres(world.dbUrl(world.dbs.single), { max: 1, onnotice: () => {} });
    const load = { connections: 32, seconds };
    const settleStats = () => new Promise((r) => setTimeout(r, 11_000));
    log("warming both: one send from each user (every token verified), then 3 s of sends each");
    await warmTokens(url(world.dialogs), users, tokens);
    await warmTokens(url(world.single), users, tokens);
    await sendLoad(url(world.dialogs), users, tokens, { ...load, seconds: 3 });
    await sagaFigures(dSql, new Date(0));
    await sendLoad(url(world.single), users, tokens, { ...load, seconds: 3 });
    await settleStats();

    const backends = (db: string) => async () =>
      (await world.admin<{ pid: number }[]>`
        select pid from pg_stat_activity where datname = ${db}`).map((r) => r.pid);
    const one = (pid: number | undefined) => () => Promise.resolve(pid ? [pid] : []);
    const measure = async (
      watched: Watched,
      threads: Record<string, number>,
      dbs: string[],
      run: () => Promise<number>,
    ) => {
      const before = await dbActivity(world.admin, dbs);
      const a = await snapshot(watched, threads);
      const sends = await run();
      const b = await snapshot(watched, threads);
      // An idle Postgres backend publishes its counts within 10 s (PGSTAT_IDLE_INTERVAL).
      await settleStats();
      const after = await dbActivity(world.admin, dbs);
      const activity = dbs.map((db) => ({
        db,
        xacts: (after.get(db)!.xacts - before.get(db)!.xacts) / sends,
        written: (after.get(db)!.written - before.get(db)!.written) / sends,
      }));
      const cpu = cpuBetween(a, b);
      const perSend: Record<string, number> = {};
      for (const [name, us] of Object.entries(cpu.total)) perSend[name] = us / sends;
      perSend.wrk = cpu.wrk / sends;
      return { sends, cpu, perSend, activity, window: { fromUs: a.atUs, toUs: b.atUs } };
    };

    log(`(e) ${seconds} s of sends without a saga, 32 connections`);
    const eSince = new Date();
    const e = await measure(
      {
        [E]: one(world.single.pid),
        "postgres: (e)'s backends": backends(world.dbs.single),
      },
      { [E]: world.single.pid! },
      [world.dbs.single],
      async () => {
        await sendLoad(url(world.single), users, tokens, load);
        const [row] =
          await eSql`select count(*)::int as n from messages where created_at >= ${eSince}`;
        return row!.n as number;
      },
    );
    log(`(d) ${seconds} s of sends through the saga, 32 connections, until every send settled`);
    const dSince = new Date();
    const threads = { dialogs: world.dialogs.pid!, counters: world.counters.pid! };
    const d = await measure(
      {
        dialogs: one(world.dialogs.pid),
        counters: one(world.counters.pid),
        "postgres: dialogs' backends": backends(world.dbs.dialogs),
        "postgres: counters' backends": backends(world.dbs.counters),
        "nats-server": one(nats.pid),
        "redis-server": one(redis.pid),
      },
      threads,
      [world.dbs.dialogs, world.dbs.counters],
      async () => {
        await sendLoad(url(world.dialogs), users, tokens, load);
        return (await sagaFigures(dSql, dSince)).count;
      },
    );
    await dSql.end();
    await eSql.end();
    const pids = { ...threads, [E]: world.single.pid! };
    log("stopping dialogs, counters and (e): their profiles are written as they exit");
    await Promise.all([world.dialogs, world.counters, world.single].map((p) => p.terminate()));
    const stages: SendRunCpu["stages"] = {};
    for (const [name, pid] of profiled ? Object.entries(pids) : []) {
      // Each process's own run: (e)'s, or the saga's.
      const run = name === E ? e : d;
      const file = [...Deno.readDirSync(profiles)].find((f) =>
        f.name.endsWith(`.${pid}.cpuprofile`)
      );
      if (!file) throw new Error(`no CPU profile of ${name} (pid ${pid}) in ${profiles}`);
      const profile = JSON.parse(await Deno.readTextFile(`${profiles}/${file.name}`)) as CpuProfile;
      const { stages: sampled, leaves } = profileStages(profile, run.window);
      if (top > 0) {
        const busy = [...sampled.values()].reduce((a, b) => a + b, 0);
        console.log(`${name}: the ${top} functions with the most self time in the window`);
        for (const [leaf, us] of [...leaves].sort((a, b) => b[1] - a[1]).slice(0, top)) {
          console.log(`  ${((us / busy) * 100).toFixed(1)}%  ${leaf}`);
        }
      }
      const mainPerSend = run.cpu.main[name]! / run.sends;
      stages[name] = {
        stages: splitByStage(sampled, mainPerSend),
        offMainThread: new Map(
          [...run.cpu.threads[name]!].map(([kind, us]) => [kind, us / run.sends]),
        ),
      };
    }
    const dRun: SendRunCpu = {
      sends: d.sends,
      seconds: (d.window.toUs - d.window.fromUs) / 1e6,
      perSend: d.perSend,
      stages,
    };
    const eRun: SendRunCpu = {
      sends: e.sends,
      seconds: (e.window.toUs - e.window.fromUs) / 1e6,
      perSend: e.perSend,
      stages: {},
    };
    const load1 = (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3).join(" ");
    console.log(processTable(dRun, eRun));
    console.log();
    if (profiled) {
      // One table: the saga's two services, then (e)'s one process.
      console.log(stageTable({ ...dRun, perSend: { ...d.perSend, ...e.perSend } }));
      console.log();
    }
    const [dDb, cDb] = d.activity, [eDb] = e.activity;
    console.log(databaseTable([
      { what: "(d) dialogs", ...dDb! },
      { what: "(d) counters", ...cDb! },
      { what: "(e) its one database", ...eDb! },
    ]));
    console.log();
    console.log(`load average at the end: ${load1}; logs in ${world.logs}`);
  } finally {
    await tearDown();
    Deno.removeSignalListener("SIGINT", stop);
  }
}

if (import.meta.main) {
  try {
    await main();
  } catch (err) {
    console.error(`bench:cpu: ${(err as Error).stack ?? err}`);
    Deno.exit(1);
  }
}
