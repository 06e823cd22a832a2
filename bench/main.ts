/**
 * `deno task bench`: measures, in one run on this machine, (a) a bare Hono hello, (b) GET
 * /api/counters for 10,000 users, (c) the naive count over 1,000,000 messages and (d) the write path
 * beside pgbench's ceiling; prints the table and writes docs/performance.md and its chart.
 */
import postgres from "postgres";
import { jetstreamManager } from "@nats-io/jetstream";
import { Redis } from "ioredis";
import { signToken } from "../shared/auth.ts";
import { quoteIdent } from "../shared/db.ts";
import { connectNats, streamNames } from "../shared/jetstream.ts";
import { denoProcess, findBinary } from "../testing/processes.ts";
import {
  type BenchFigures,
  chartSvg,
  figuresTable,
  performanceDoc,
  targets,
  targetsTable,
} from "./report.ts";
import { benchUsers, seedCounters, seedMessages } from "./seed.ts";
import { runWrk } from "./wrk.ts";
import { pgbenchCeiling, preparePgbench, sagaFigures, sendLoad } from "./write_path.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const SECRET = "bench-secret-0123456789abcdef";
const KEPT_MARKER = "<!-- Written by hand; deno task bench keeps everything from here on. -->";

interface BenchOptions {
  seconds: number;
  connections: number;
  write: boolean;
  read: boolean;
  doc: boolean;
}

function parseArgs(args: string[]): BenchOptions {
  const options: BenchOptions = {
    seconds: 10,
    connections: 64,
    write: true,
    read: true,
    doc: true,
  };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--seconds") options.seconds = Number(args[++i]);
    else if (a === "--connections") options.connections = Number(args[++i]);
    else if (a === "--no-write") options.write = false;
    else if (a === "--no-read") options.read = false;
    else if (a === "--no-doc") options.doc = false;
    else throw new Error(`unknown option ${a}`);
  }
  if (!(options.seconds > 0 && options.connections > 0)) {
    throw new Error("numbers must be positive");
  }
  return options;
}

async function machine(): Promise<string> {
  const cpu = (await Deno.readTextFile("/proc/cpuinfo")).match(/model name\s*:\s*(.+)/)?.[1] ??
    "unknown CPU";
  const mem = Number((await Deno.readTextFile("/proc/meminfo")).match(/MemTotal:\s+(\d+)/)?.[1]);
  return `${navigator.hardwareConcurrency} cores (${cpu.trim()}), ${
    Math.round(mem / 1024 / 1024)
  } GiB, Deno ${Deno.version.deno}`;
}

/** The highest VmRSS of `pid` sampled every 200 ms while `work` runs, in MB. */
async function peakRss<T>(pids: number[], work: Promise<T>): Promise<[T, number[]]> {
  const peaks = pids.map(() => 0);
  let done = false;
  const sampler = (async () => {
    while (!done) {
      for (const [i, pid] of pids.entries()) {
        const status = await Deno.readTextFile(`/proc/${pid}/status`).catch(() => "");
        const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
        peaks[i] = Math.max(peaks[i]!, kb / 1024);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  })();
  const result = await work.finally(() => done = true);
  await sampler;
  return [result, peaks];
}

async function main() {
  const options = parseArgs(Deno.args);
  await findBinary("wrk");
  await findBinary("pgbench");
  const id = crypto.randomUUID().replaceAll("-", "").slice(0, 10);
  const adminUrl = Deno.env.get("TEST_DATABASE_URL") ??
    "postgres://postgres@127.0.0.1:5432/postgres";
  const natsUrl = Deno.env.get("TEST_NATS_URL") ?? "nats://127.0.0.1:4222";
  const redisUrl = Deno.env.get("TEST_REDIS_URL") ?? "redis://127.0.0.1:6379";
  const dbUrl = (name: string) =>
    Object.assign(new URL(adminUrl), { pathname: `/${name}` }).toString();
  const dbs = {
    dialogs: `bench_${id}_dialogs`,
    counters: `bench_${id}_counters`,
    pg: `bench_${id}_pg`,
  };
  const prefix = `bench${id}`, stream = `BENCH${id}`;
  const logs = await Deno.makeTempDir({ prefix: "bench-" });
  const common = {
    NATS_URL: natsUrl,
    NATS_STREAM: stream,
    NATS_SUBJECT_PREFIX: prefix,
    JWT_SECRET: SECRET,
    LOG_LEVEL: "warn",
  };
  const proc = (name: string, script: string, env: Record<string, string>) =>
    denoProcess({ name, script, env: { ...common, ...env }, logFile: `${logs}/${name}.log` });
  const counters = proc("counters", "counters/main.ts", {
    DATABASE_URL: dbUrl(dbs.counters),
    REDIS_URL: redisUrl,
    REDIS_KEY_PREFIX: `${prefix}:`,
    RECONCILE_INTERVAL_MS: "0",
  });
  const dialogs = proc("dialogs", "dialogs/main.ts", { DATABASE_URL: dbUrl(dbs.dialogs) });
  const hello = proc("hello", "bench/hello_server.ts", {});
  const floor = proc("floor", "bench/floor_server.ts", {});
  const naive = proc("naive", "bench/naive_server.ts", { DATABASE_URL: dbUrl(dbs.dialogs) });
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  const url = (p: { port: number }, path: string) => `http://127.0.0.1:${p.port}${path}`;
  const log = (msg: string) => console.error(`bench: ${msg}`);

  try {
    await Promise.all([counters.start(), dialogs.start(), hello.start(), floor.start()]);
    await naive.start();
    const users = benchUsers();
    log("seeding 10,000 users' counters and (for the reads) 1,000,000 messages");
    const dSql = postgres(dbUrl(dbs.dialogs), { max: 2, onnotice: () => {} });
    const cSql = postgres(dbUrl(dbs.counters), { max: 2, onnotice: () => {} });
    await seedCounters(cSql, users);
    const token = (u: string) => signToken(u, SECRET, 3600);
    const lightTokens = await Promise.all(users.light.map(token));
    const heavyTokens = await Promise.all(users.heavy.map(token));
    const wrk = (u: string, tokens?: string[]) =>
      runWrk(u, { connections: options.connections, seconds: options.seconds, tokens });

    const none = { requestsPerSecond: 0, p50Ms: 0, p99Ms: 0, errors: 0 };
    let helloRun = none, helloWithTokens = none, floorRun = none;
    let countersLight = none, countersHeavy = none;
    let naiveLight = none, naiveHeavy = none, countersRss = 0;
    if (options.read) {
      await seedMessages(dSql, users);
      log("(a) bare Hono hello");
      helloRun = await wrk(url(hello, "/"));
      helloWithTokens = await wrk(url(hello, "/"), lightTokens);
      await wrk(url(floor, "/api/counters"), lightTokens); // every token verified once
      floorRun = await wrk(url(floor, "/api/counters"), lightTokens);
      log("(b) GET /api/counters");
      await wrk(url(counters, "/api/counters"), lightTokens).catch(() => {}); // warm the caches
      [countersLight, [countersRss = 0]] = await peakRss(
        [counters.pid!],
        wrk(url(counters, "/api/counters"), lightTokens),
      );
      countersHeavy = await wrk(url(counters, "/api/counters"), heavyTokens);
      log("(c) the naive count");
      naiveLight = await wrk(url(naive, "/api/counters"), lightTokens);
      naiveHeavy = await wrk(url(naive, "/api/counters"), heavyTokens);
    }

    let pgbenchTps = 0, sagaPerSecond = 0, sendAcceptPerSecond = 0, dialogsRss = 0;
    let countersRssWrite = 0;
    let halfLoad = { rate: 0, p50Ms: 0, p99Ms: 0, failed: 0 };
    if (options.write) {
      log("(d) pgbench ceiling");
      await admin.unsafe(`create database ${quoteIdent(dbs.pg)}`);
      const pgSql = postgres(dbUrl(dbs.pg), { max: 1, onnotice: () => {} });
      await preparePgbench(pgSql);
      await pgSql.end();
      pgbenchTps = await pgbenchCeiling(dbUrl(dbs.pg), { clients: 16, seconds: options.seconds });
      log("(d) sends through the saga at full speed");
      const writers = users.light.slice(0, 2_000);
      const writerTokens = new Map(writers.map((u, i) => [u, lightTokens[i]!]));
      const since = new Date();
      const [full, [rssD, rssC]] = await peakRss(
        [dialogs.pid!, counters.pid!],
        sendLoad(url(dialogs, ""), writers, writerTokens, {
          connections: 32,
          seconds: options.seconds,
        }),
      );
      const saga = await sagaFigures(dSql, since);
      sagaPerSecond = saga.perSecond;
      sendAcceptPerSecond = full.requestsPerSecond;
      dialogsRss = rssD!;
      log(`(d) at half that load (${(saga.perSecond / 2).toFixed(0)}/s)`);
      const halfSince = new Date();
      const rate = Math.max(1, Math.floor(saga.perSecond / 2));
      const [, [rssD2, rssC2]] = await peakRss(
        [dialogs.pid!, counters.pid!],
        sendLoad(url(dialogs, ""), writers, writerTokens, {
          connections: 16,
          seconds: options.seconds,
          rate,
        }),
      );
      const half = await sagaFigures(dSql, halfSince);
      halfLoad = { rate, p50Ms: half.p50Ms, p99Ms: half.p99Ms, failed: half.failed };
      dialogsRss = Math.max(dialogsRss, rssD2!);
      countersRssWrite = Math.max(rssC!, rssC2!);
    }
    await dSql.end();
    await cSql.end();

    const figures: BenchFigures = {
      machine: await machine(),
      connections: options.connections,
      seconds: options.seconds,
      hello: helloRun,
      helloWithTokens,
      floor: floorRun,
      countersLight,
      countersHeavy,
      naiveLight,
      naiveHeavy,
      pgbenchTps,
      sagaPerSecond,
      sendAcceptPerSecond,
      halfLoad,
      rssMb: { counters: Math.max(countersRss, countersRssWrite), dialogs: dialogsRss },
    };
    console.log(figuresTable(figures));
    console.log();
    console.log(targetsTable(figures));
    // A run without the reads or the write path would leave docs/performance.md without half its figures.
    if (options.doc && options.write && options.read) {
      const docPath = `${ROOT}docs/performance.md`;
      const existing = await Deno.readTextFile(docPath).catch(() => "");
      // Everything from the marker on is written by hand and kept between runs.
      const kept = existing.includes(KEPT_MARKER)
        ? existing.slice(existing.indexOf(KEPT_MARKER)).trimEnd()
        : `${KEPT_MARKER}\n\n## Scaling\n\n(to be written)`;
      await Deno.writeTextFile(docPath, performanceDoc(figures, "deno task bench", kept));
      await Deno.writeTextFile(`${ROOT}docs/performance.svg`, chartSvg(figures));
      // Written the way `deno fmt --check` (CI) wants them.
      await new Deno.Command(Deno.execPath(), {
        args: ["fmt", "-q", docPath, `${ROOT}docs/performance.svg`],
      }).output();
      log("wrote docs/performance.md and docs/performance.svg");
    }
    const missed = targets(figures).filter((t) => !t.met).length;
    log(`${missed} target(s) missed; logs in ${logs}`);
  } finally {
    await Promise.all(
      [counters, dialogs, hello, floor, naive].map((p) => p.terminate().catch(() => {})),
    );
    for (const db of Object.values(dbs)) {
      await admin.unsafe(`drop database if exists ${quoteIdent(db)} with (force)`).catch(() => {});
    }
    await admin.end();
    const nc = await connectNats(natsUrl, "bench-cleanup");
    const jsm = await jetstreamManager(nc);
    const names = streamNames(stream, prefix);
    for (const s of [names.stream, names.deadLetterStream]) {
      await jsm.streams.delete(s).catch(() => {});
    }
    await nc.close();
    const redis = new Redis(redisUrl);
    const keys = await redis.keys(`${prefix}:*`);
    if (keys.length) await redis.del(...keys);
    await redis.quit();
  }
}

if (import.meta.main) {
  try {
    await main();
  } catch (err) {
    console.error(`bench: ${(err as Error).message}`);
    Deno.exit(1);
  }
}
