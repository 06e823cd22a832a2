/**
 * What one bench run measures: (a) to (c) the reads, (d) the write path beside (e) the same send
 * without a saga, with peak memory.
 */
import postgres from "postgres";
import { signToken } from "../shared/auth.ts";
import { quoteIdent } from "../shared/db.ts";
import type { BenchFigures } from "./report.ts";
import { type BenchUsers, benchUsers, seedCounters, seedMessages } from "./seed.ts";
import type { BenchWorld } from "./world.ts";
import { runWrk } from "./wrk.ts";
import { pgbenchCeiling, preparePgbench, sagaFigures, sendLoad, warmTokens } from "./write_path.ts";

/** What a measurement varies: how long each run lasts and how many connections wrk opens. */
export interface MeasureOptions {
  seconds: number;
  connections: number;
}

const url = (p: { port: number }, path: string) => `http://127.0.0.1:${p.port}${path}`;
/** A progress line on stderr. */
export const log = (msg: string) =>
  console.error(`bench ${new Date().toISOString().slice(11, 19)}: ${msg}`);

/** The highest VmRSS of each of `pids` sampled every 200 ms while `work` runs, in MB. */
export async function peakRss<T>(pids: number[], work: Promise<T>): Promise<[T, number[]]> {
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

/** The seeded users, their tokens and the connections the measurements read through. */
export interface Seeded {
  users: BenchUsers;
  lightTokens: string[];
  heavyTokens: string[];
  dSql: postgres.Sql;
  cSql: postgres.Sql;
}

/** Seeds 10,000 users' counters and signs a token for each user. */
export async function seedUsers(world: BenchWorld): Promise<Seeded> {
  const users = benchUsers();
  log("seeding 10,000 users' counters and (for the reads) 1,000,000 messages");
  const dSql = postgres(world.dbUrl(world.dbs.dialogs), { max: 2, onnotice: () => {} });
  const cSql = postgres(world.dbUrl(world.dbs.counters), { max: 2, onnotice: () => {} });
  await seedCounters(cSql, users);
  const token = (u: string) => signToken(u, world.secret, 3600);
  const lightTokens = await Promise.all(users.light.map(token));
  const heavyTokens = await Promise.all(users.heavy.map(token));
  return { users, lightTokens, heavyTokens, dSql, cSql };
}

/** What (a) to (c) measure. */
export type ReadFigures =
  & Pick<
    BenchFigures,
    | "hello"
    | "helloWithTokens"
    | "floor"
    | "countersLight"
    | "countersHeavy"
    | "naiveLight"
    | "naiveHeavy"
  >
  & { countersRssMb: number };

const NO_RUN = { requestsPerSecond: 0, p50Ms: 0, p99Ms: 0, errors: 0 };

/** The figures of a run without the reads. */
export const NO_READS: ReadFigures = {
  hello: NO_RUN,
  helloWithTokens: NO_RUN,
  floor: NO_RUN,
  countersLight: NO_RUN,
  countersHeavy: NO_RUN,
  naiveLight: NO_RUN,
  naiveHeavy: NO_RUN,
  countersRssMb: 0,
};

/** (a) a bare Hono hello and its floor, (b) GET /api/counters, (c) the naive count. */
export async function measureReads(
  world: BenchWorld,
  options: MeasureOptions,
  seeded: Seeded,
): Promise<ReadFigures> {
  const { hello, floor, counters, naive } = world;
  const { lightTokens, heavyTokens } = seeded;
  const wrk = (u: string, tokens?: string[]) =>
    runWrk(u, { connections: options.connections, seconds: options.seconds, tokens });
  await seedMessages(seeded.dSql, seeded.users);
  log("(a) bare Hono hello");
  const helloRun = await wrk(url(hello, "/"));
  const helloWithTokens = await wrk(url(hello, "/"), lightTokens);
  await wrk(url(floor, "/api/counters"), lightTokens); // every token verified once
  const floorRun = await wrk(url(floor, "/api/counters"), lightTokens);
  log("(b) GET /api/counters");
  // Warm the caches twice: on a busy machine one run may not get through 10,000 cold loads, and
  // the measured run would start with their tail.
  await wrk(url(counters, "/api/counters"), lightTokens).catch(() => {});
  await wrk(url(counters, "/api/counters"), lightTokens).catch(() => {});
  const [countersLight, [countersRssMb = 0]] = await peakRss(
    [counters.pid!],
    wrk(url(counters, "/api/counters"), lightTokens),
  );
  const countersHeavy = await wrk(url(counters, "/api/counters"), heavyTokens);
  log("(c) the naive count");
  const naiveLight = await wrk(url(naive, "/api/counters"), lightTokens);
  const naiveHeavy = await wrk(url(naive, "/api/counters"), heavyTokens);
  return {
    hello: helloRun,
    helloWithTokens,
    floor: floorRun,
    countersLight,
    countersHeavy,
    naiveLight,
    naiveHeavy,
    countersRssMb,
  };
}

/** What (d) and (e) measure. */
export type WriteFigures =
  & Pick<
    BenchFigures,
    "pgbenchTps" | "single" | "sagaPerSecond" | "sendAcceptPerSecond" | "halfLoad"
  >
  & { dialogsRssMb: number; countersRssMb: number };

/** The figures of a run without the write path. */
export const NO_WRITES: WriteFigures = {
  pgbenchTps: 0,
  single: NO_RUN,
  sagaPerSecond: 0,
  sendAcceptPerSecond: 0,
  halfLoad: { rate: 0, p50Ms: 0, p99Ms: 0, failed: 0 },
  dialogsRssMb: 0,
  countersRssMb: 0,
};

/**
 * pgbench's ceiling (for information), (e) the same sends without a saga, then (d) sends through
 * the saga at full speed, right after (e) with the same load, and at half (d)'s rate.
 */
export async function measureWrites(
  world: BenchWorld,
  options: MeasureOptions,
  seeded: Seeded,
): Promise<WriteFigures> {
  const { dialogs, counters, dbs, dbUrl } = world;
  log("(d) pgbench ceiling");
  await world.admin.unsafe(`create database ${quoteIdent(dbs.pg)}`);
  const pgSql = postgres(dbUrl(dbs.pg), { max: 1, onnotice: () => {} });
  await preparePgbench(pgSql);
  await pgSql.end();
  const pgbenchTps = await pgbenchCeiling(dbUrl(dbs.pg), {
    clients: 16,
    seconds: options.seconds,
  });
  const writers = seeded.users.light.slice(0, 2_000);
  const writerTokens = new Map(writers.map((u, i) => [u, seeded.lightTokens[i]!]));
  const fullSpeed = { connections: 32, seconds: options.seconds };
  log("(d) and (e): one send from each writer, so both know every token");
  const warmed = new Date();
  await warmTokens(url(world.single, ""), writers, writerTokens);
  await warmTokens(url(dialogs, ""), writers, writerTokens);
  await sagaFigures(seeded.dSql, warmed);
  log("(e) the same sends without a saga, one process, one transaction each");
  const single = await sendLoad(url(world.single, ""), writers, writerTokens, fullSpeed);
  log("(d) sends through the saga at full speed");
  const since = new Date();
  const [full, [rssD, rssC]] = await peakRss(
    [dialogs.pid!, counters.pid!],
    sendLoad(url(dialogs, ""), writers, writerTokens, fullSpeed),
  );
  const saga = await sagaFigures(seeded.dSql, since);
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
  const half = await sagaFigures(seeded.dSql, halfSince);
  return {
    pgbenchTps,
    single,
    sagaPerSecond: saga.perSecond,
    sendAcceptPerSecond: full.requestsPerSecond,
    halfLoad: { rate, p50Ms: half.p50Ms, p99Ms: half.p99Ms, failed: half.failed },
    dialogsRssMb: Math.max(rssD!, rssD2!),
    countersRssMb: Math.max(rssC!, rssC2!),
  };
}
