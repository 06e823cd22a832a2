/** A test's private world: its own databases, stream, subject prefix and Redis key prefix, removed after. */
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { Redis } from "ioredis";
import postgres from "postgres";
import { type CountersConfig, loadCountersConfig } from "../counters/config.ts";
import { startCounters } from "../counters/main.ts";
import { entryKey } from "../counters/redis_cache.ts";
import { type DialogsConfig, loadDialogsConfig } from "../dialogs/config.ts";
import { startDialogs } from "../dialogs/main.ts";
import { signToken } from "../shared/auth.ts";
import { quoteIdent, type Sql } from "../shared/db.ts";
import { connectNats, streamNames } from "../shared/jetstream.ts";
import type { LogSink } from "../shared/log.ts";
import type { RunningService } from "../shared/service/run_main.ts";
import { testServices } from "./services.ts";

/** The JWT secret every test service uses. */
export const TEST_JWT_SECRET = "test-secret-0123456789abcdef";

/** One test's isolated resources and the services it started. */
export interface TestEnv {
  id: string;
  prefix: string;
  stream: string;
  redisPrefix: string;
  dialogsDatabaseUrl: string;
  countersDatabaseUrl: string;
  redisUrl: string;
  natsUrl: string;
  /** Every log line the test's services wrote, parsed. */
  logs: Record<string, unknown>[];
  logSink: LogSink;
  dialogsConfig(overrides?: Partial<DialogsConfig>): DialogsConfig;
  countersConfig(overrides?: Partial<CountersConfig>): CountersConfig;
  startDialogs(options?: { relay?: boolean; overrides?: Partial<DialogsConfig> }): Promise<Service>;
  startCounters(options?: { overrides?: Partial<CountersConfig> }): Promise<Service>;
  /** A NATS connection closed at cleanup. */
  nats(): Promise<NatsConnection>;
  /** The Postgres pool on the named database of this test (one per database), closed at cleanup. */
  sql(which: "dialogs" | "counters"): Sql;
  /** A Redis client without key prefix, closed at cleanup. */
  redis(): Redis;
  /** The raw Redis entry of a user's counters in the generation Redis holds now, or null. */
  cachedEntry(userId: string): Promise<string | null>;
  /** Stops everything started, drops the databases, deletes the streams and the Redis keys. */
  cleanup(): Promise<void>;
}

/** A started service with its base URL. */
export interface Service extends RunningService {
  url: string;
}

/** Creates a test's isolated environment on the resolved test services. */
export async function createTestEnv(): Promise<TestEnv> {
  const services = await testServices();
  const id = crypto.randomUUID().replaceAll("-", "").slice(0, 12);
  const prefix = `t${id}`;
  // The services leave NATS_STREAM unset and derive this same name from the prefix.
  const stream = streamNames(undefined, prefix).stream;
  const redisPrefix = `t${id}:`;
  const dbUrl = (name: string) => {
    const u = new URL(services.databaseUrl);
    u.pathname = `/${name}`;
    return u.toString();
  };
  const dialogsDatabaseUrl = dbUrl(`t_${id}_dialogs`);
  const countersDatabaseUrl = dbUrl(`t_${id}_counters`);
  const logs: Record<string, unknown>[] = [];
  const echo = Deno.env.get("TEST_LOG") === "1";
  const logSink: LogSink = (line) => {
    logs.push(JSON.parse(line));
    if (echo) console.log(line);
  };
  const running: RunningService[] = [];
  const closers: (() => Promise<unknown>)[] = [];
  const pools = new Map<"dialogs" | "counters", Sql>();

  const common = {
    NATS_URL: services.natsUrl,
    JWT_SECRET: TEST_JWT_SECRET,
    NATS_SUBJECT_PREFIX: prefix,
    LOG_LEVEL: "debug" as const,
    PORT: 0,
  };
  const env: TestEnv = {
    id,
    prefix,
    stream,
    redisPrefix,
    dialogsDatabaseUrl,
    countersDatabaseUrl,
    redisUrl: services.redisUrl,
    natsUrl: services.natsUrl,
    logs,
    logSink,
    dialogsConfig: (overrides = {}) => ({
      ...loadDialogsConfig({}),
      ...common,
      DATABASE_URL: dialogsDatabaseUrl,
      ...overrides,
    }),
    countersConfig: (overrides = {}) => ({
      ...loadCountersConfig({}),
      ...common,
      DATABASE_URL: countersDatabaseUrl,
      REDIS_URL: services.redisUrl,
      REDIS_KEY_PREFIX: redisPrefix,
      // Off unless a test turns it on, so no test sees repairs it did not ask for.
      RECONCILE_INTERVAL_MS: 0,
      ...overrides,
    }),
    async startDialogs(options = {}) {
      const s = await startDialogs(env.dialogsConfig(options.overrides), {
        logSink,
        hostname: "127.0.0.1",
        relay: options.relay,
      });
      return track(s);
    },
    async startCounters(options = {}) {
      const s = await startCounters(env.countersConfig(options.overrides), {
        logSink,
        hostname: "127.0.0.1",
      });
      return track(s);
    },
    async nats() {
      const nc = await connectNats(services.natsUrl, `test-${id}`);
      closers.push(() => nc.close());
      return nc;
    },
    async cachedEntry(userId) {
      const stamp = await this.redis().get(`${redisPrefix}generation`);
      return stamp === null
        ? null
        : await this.redis().get(`${redisPrefix}${entryKey(stamp, userId)}`);
    },
    sql(which) {
      let pool = pools.get(which);
      if (!pool) {
        pool = postgres(which === "dialogs" ? dialogsDatabaseUrl : countersDatabaseUrl, {
          max: 4,
          onnotice: () => {},
        });
        pools.set(which, pool);
        const opened = pool;
        closers.push(() => opened.end({ timeout: 1 }));
      }
      return pool;
    },
    redis() {
      const r = new Redis(services.redisUrl);
      closers.push(() => r.quit());
      return r;
    },
    async cleanup() {
      // A service that does not stop is named, the rest is still cleaned up, then the test fails.
      const stuck: string[] = [];
      for (const s of running.splice(0).reverse()) {
        await withinDeadline(s.stop(), STOP_DEADLINE_MS, `the service on port ${s.port}`)
          .catch((err) => {
            if (!String(err?.message).includes("did not finish")) return;
            const last = logs.findLast((l) => String(l.msg).startsWith("stopping:"));
            stuck.push(`${err.message} (last step logged: ${last?.msg ?? "none"})`);
          });
      }
      await cleanupResources(services.databaseUrl, services.natsUrl, services.redisUrl, {
        databases: [`t_${id}_dialogs`, `t_${id}_counters`],
        stream,
        redisPrefix,
      });
      for (const close of closers.splice(0).reverse()) await close().catch(() => {});
      if (stuck.length > 0) throw new Error(stuck.join("; "));
    },
  };

  function track(s: RunningService): Service {
    const stopOnce = { done: false };
    const service: Service = {
      port: s.port,
      url: `http://127.0.0.1:${s.port}`,
      async stop() {
        if (stopOnce.done) return;
        stopOnce.done = true;
        await s.stop();
      },
    };
    running.push(service);
    return service;
  }
  return env;
}

async function cleanupResources(
  databaseUrl: string,
  natsUrl: string,
  redisUrl: string,
  what: { databases: string[]; stream: string; redisPrefix: string },
): Promise<void> {
  const admin = postgres(databaseUrl, { max: 1, onnotice: () => {} });
  try {
    for (const db of what.databases) {
      await admin.unsafe(`drop database if exists ${quoteIdent(db)} with (force)`);
    }
  } finally {
    await admin.end();
  }
  const nc = await connectNats(natsUrl, "test-cleanup");
  try {
    const jsm = await jetstreamManager(nc);
    const names = streamNames(what.stream, "");
    for (const s of [names.stream, names.deadLetterStream]) {
      await jsm.streams.delete(s).catch(() => {});
    }
  } finally {
    await nc.close();
  }
  const redis = new Redis(redisUrl);
  try {
    let cursor = "0";
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", `${what.redisPrefix}*`, "COUNT", 500);
      cursor = next;
      if (keys.length) await redis.del(...keys);
    } while (cursor !== "0");
  } finally {
    await redis.quit();
  }
}

/** Deno.test for tests on real servers: npm clients keep timers, so the sanitizers are off. */
export function integrationTest(name: string, fn: (env: TestEnv) => Promise<void>): void {
  Deno.test({
    name,
    sanitizeOps: false,
    sanitizeResources: false,
    async fn() {
      const env = await createTestEnv();
      try {
        await withinDeadline(fn(env), TEST_DEADLINE_MS, "the test");
      } finally {
        await withinDeadline(env.cleanup(), CLEANUP_DEADLINE_MS, "the test's cleanup");
      }
    },
  });
}

/** Longer than any integration test takes; a hung one fails instead of stalling the whole run. */
const TEST_DEADLINE_MS = 10 * 60_000;
/** Longer than stopping the services and dropping the resources takes. */
const CLEANUP_DEADLINE_MS = 60_000;
/** How long one started service may take to stop before cleanup goes on without it. */
const STOP_DEADLINE_MS = 30_000;

/** `work`, or an error naming `what` once `ms` passed (the work itself goes on unobserved). */
async function withinDeadline<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
  });
  work.catch(() => {});
  try {
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `check` until it returns a truthy value or `timeoutMs` passes; returns that value. */
export async function waitFor<T>(
  check: () => Promise<T> | T,
  options: { timeoutMs?: number; intervalMs?: number; what?: string } = {},
): Promise<NonNullable<T>> {
  const deadline = Date.now() + (options.timeoutMs ?? 10_000);
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value) return value as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, options.intervalMs ?? 50));
  }
  throw new Error(
    `timed out after ${options.timeoutMs ?? 10_000} ms waiting for ${
      options.what ?? "a condition"
    }`,
    { cause: last },
  );
}

/** A bearer token for `userId` signed with the test secret. */
export async function bearer(userId: string, ttlSeconds = 3600): Promise<string> {
  return `Bearer ${await signToken(userId, TEST_JWT_SECRET, ttlSeconds)}`;
}

/** A fetch helper: JSON in, status + parsed body + headers out. */
export async function call(
  url: string,
  init: { method?: string; auth?: string; body?: unknown; headers?: Record<string, string> } = {},
  /** Who answers: the network, or an app's `request` in tests without a server. */
  send: (url: string, init: RequestInit) => Response | Promise<Response> = fetch,
  // deno-lint-ignore no-explicit-any
): Promise<{ status: number; body: any; headers: Headers }> {
  const headers: Record<string, string> = { ...init.headers };
  if (init.auth) headers.Authorization = init.auth;
  let body: string | undefined;
  if (init.body !== undefined) {
    body = typeof init.body === "string" ? init.body : JSON.stringify(init.body);
    headers["Content-Type"] ??= "application/json";
  }
  const res = await send(url, { method: init.method ?? (body ? "POST" : "GET"), headers, body });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch { /* not JSON; keep the text */ }
  return { status: res.status, body: parsed, headers: res.headers };
}

/** The JetStream client of a connection, for tests that publish raw messages. */
export { jetstream };

/** Creates the database at `url` if needed and applies the shared and the service's migrations. */
export async function migratedDatabase(url: string, service: "dialogs" | "counters"): Promise<Sql> {
  const { ensureDatabase, openDatabase } = await import("../shared/db.ts");
  const { migrate, readMigrations, sharedMigrations } = await import("../shared/migrate.ts");
  await ensureDatabase(url);
  const sql = openDatabase(url, { max: 4 });
  await migrate(sql, [
    ...(await sharedMigrations()),
    ...(await readMigrations(new URL(`../${service}/migrations/`, import.meta.url))),
  ]);
  return sql;
}

/** Runs `fn` on the test's migrated counters database, closing the connection after. */
export async function withCountersDatabase(
  env: TestEnv,
  fn: (sql: Sql) => Promise<void>,
): Promise<void> {
  const sql = await migratedDatabase(env.countersDatabaseUrl, "counters");
  try {
    await fn(sql);
  } finally {
    await sql.end();
  }
}
