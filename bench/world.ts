/** One bench run's world: its processes, databases, stream and key prefix, named for the run. */
import postgres from "postgres";
import { jetstreamManager } from "@nats-io/jetstream";
import { Redis } from "ioredis";
import { quoteIdent } from "../shared/db.ts";
import { connectNats, streamNames } from "../shared/jetstream.ts";
import { denoProcess, type ManagedProcess } from "../testing/processes.ts";
import { type Deployment, serviceEnv, sharedEnv } from "../testing/services_env.ts";

const SECRET = "bench-secret-0123456789abcdef";

/** Where one run lives: its processes, databases, stream and key prefix, each named for the run. */
export interface BenchWorld {
  /** The JWT secret the services verify tokens with. */
  secret: string;
  /** What every service process of the run is configured with (serviceEnv). */
  deployment: Deployment;
  adminUrl: string;
  natsUrl: string;
  redisUrl: string;
  dbUrl: (name: string) => string;
  /** (e)'s database is `single`; pgbench's tables are in `pg`. */
  dbs: { dialogs: string; counters: string; pg: string; single: string };
  prefix: string;
  stream: string;
  logs: string;
  counters: ManagedProcess;
  dialogs: ManagedProcess;
  hello: ManagedProcess;
  floor: ManagedProcess;
  naive: ManagedProcess;
  /** (e): the same send without a saga, in one process (bench/single_send_server.ts). */
  single: ManagedProcess;
  admin: postgres.Sql;
}

/** What a run may change in its world. */
export interface WorldOptions {
  /** Deno flags dialogs, counters and (e) run with besides the usual ones (e.g. `--cpu-prof`). */
  serviceFlags?: string[];
}

/** The run's names, from the environment's servers, and its processes, not started yet. */
export async function planWorld(options: WorldOptions = {}): Promise<BenchWorld> {
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
    single: `bench_${id}_single`,
  };
  const prefix = `bench${id}`, stream = `BENCH${id}`;
  const logs = await Deno.makeTempDir({ prefix: "bench-" });
  // Every process of the run shares its stream, prefix and secret.
  const deployment: Deployment = {
    natsUrl,
    stream,
    prefix,
    secret: SECRET,
    databaseUrls: { dialogs: dbUrl(dbs.dialogs), counters: dbUrl(dbs.counters) },
    redisUrl,
  };
  const proc = (name: string, script: string, env: Record<string, string>, flags?: string[]) =>
    denoProcess({ name, script, logFile: `${logs}/${name}.log`, env, flags });
  const service = (name: "dialogs" | "counters") =>
    proc(name, `${name}/main.ts`, serviceEnv(name, deployment), options.serviceFlags);
  return {
    secret: SECRET,
    deployment,
    adminUrl,
    natsUrl,
    redisUrl,
    dbUrl,
    dbs,
    prefix,
    stream,
    logs,
    counters: service("counters"),
    dialogs: service("dialogs"),
    hello: proc("hello", "bench/hello_server.ts", sharedEnv(deployment)),
    floor: proc("floor", "bench/floor_server.ts", sharedEnv(deployment)),
    naive: proc("naive", "bench/naive_server.ts", {
      ...sharedEnv(deployment),
      DATABASE_URL: dbUrl(dbs.dialogs),
    }),
    single: proc("single", "bench/single_send_server.ts", {
      ...sharedEnv(deployment),
      DATABASE_URL: dbUrl(dbs.single),
    }, options.serviceFlags),
    admin: postgres(adminUrl, { max: 1, onnotice: () => {} }),
  };
}

/**
 * Starts every process; the naive server, which reads dialogs' database, once dialogs has made it,
 * and (e) in its own database, made here.
 */
export async function startWorld(world: BenchWorld): Promise<void> {
  const { counters, dialogs, hello, floor, naive } = world;
  await Promise.all([
    counters.start(),
    dialogs.start(),
    hello.start(),
    floor.start(),
    startSingle(world),
  ]);
  await naive.start();
}

/** Makes (e)'s database and starts (e), which makes its tables. */
export async function startSingle(world: BenchWorld): Promise<void> {
  await world.admin.unsafe(`create database ${quoteIdent(world.dbs.single)}`);
  await world.single.start();
}

/** Stops the processes and removes the run's databases, streams and Redis keys. */
export async function tearDownWorld(world: BenchWorld): Promise<void> {
  const { counters, dialogs, hello, floor, naive, single, admin, prefix } = world;
  await Promise.all(
    [counters, dialogs, hello, floor, naive, single].map((p) => p.terminate().catch(() => {})),
  );
  for (const db of Object.values(world.dbs)) {
    await admin.unsafe(`drop database if exists ${quoteIdent(db)} with (force)`).catch(() => {});
  }
  await admin.end();
  const nc = await connectNats(world.natsUrl, "bench-cleanup");
  const jsm = await jetstreamManager(nc);
  const names = streamNames(world.stream, prefix);
  for (const s of [names.stream, names.deadLetterStream]) {
    await jsm.streams.delete(s).catch(() => {});
  }
  await nc.close();
  const redis = new Redis(world.redisUrl);
  const keys = await redis.keys(`${prefix}:*`);
  if (keys.length) await redis.del(...keys);
  await redis.quit();
}
