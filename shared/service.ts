/** What starting either service has in common: database, migrations, JetStream, HTTP, consumer, relay. */
import { jetstream, type JetStreamClient, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { OpenAPIHono } from "@hono/zod-openapi";
import { ConfigError, DEV_JWT_SECRET } from "./config.ts";
import { EventConsumer, type EventHandler } from "./consumer.ts";
import { ensureDatabase, openDatabase, redactUrl, type Sql } from "./db.ts";
import type { Envelope } from "./events.ts";
import {
  type AppEnv,
  createBaseApp,
  type FastPath,
  mountApiDocs,
  mountReadiness,
  type ReadinessCheck,
  type RecordRequest,
  requestRecorder,
  withFastPath,
} from "./http.ts";
import {
  connectNats,
  consumerConfig,
  ensureConsumer,
  ensureStreams,
  type StreamNames,
  streamNames,
} from "./jetstream.ts";
import { createLogger, type Logger, type LogLevel, type LogSink } from "./log.ts";
import { createMetrics, type Metrics } from "./metrics.ts";
import { migrate, readMigrations, sharedMigrations } from "./migrate.ts";
import { outboxBacklog, OutboxRelay } from "./outbox.ts";
import { retry } from "./retry.ts";
import { exitOnSignal } from "./shutdown.ts";

/** The configuration every service has. */
export interface ServiceConfig {
  DATABASE_URL: string;
  NATS_URL: string;
  NATS_STREAM: string;
  NATS_SUBJECT_PREFIX: string;
  /** Copies of each stream (1 unless told). */
  NATS_STREAM_REPLICAS?: number;
  JWT_SECRET: string;
  PORT: number;
  LOG_LEVEL: LogLevel;
}

/** What a service's own set-up receives. */
export interface ServiceContext {
  sql: Sql;
  nc: NatsConnection;
  js: JetStreamClient;
  names: StreamNames;
  log: Logger;
  metrics: Metrics;
  app: OpenAPIHono<AppEnv>;
  /** Records an answered request as the app does (latency metric, access log), for a fast path. */
  recordRequest: RecordRequest;
}

/** What a service's own set-up returns. */
export interface ServiceParts {
  /** Handles the events the service consumes. */
  handler: EventHandler;
  /** Extra readiness checks besides Postgres and NATS. */
  readiness?: Record<string, ReadinessCheck>;
  /** Runs before the outbox publishes a batch. */
  beforePublish?: (events: Envelope[]) => Promise<void>;
  /** Runs first on stop, before the server stops taking requests (e.g. ending open streams). */
  beforeStop?: () => Promise<void> | void;
  /** Stops what the set-up started, after the consumer and relay, before NATS and Postgres close. */
  close?: () => Promise<void>;
  /** Answers the hottest requests before the Hono app does (see FastPath). */
  fastPath?: FastPath;
}

/** A running service. */
export interface RunningService {
  port: number;
  stop(): Promise<void>;
}

/** Options of startService. */
export interface StartOptions {
  name: "dialogs" | "counters";
  config: ServiceConfig;
  migrations: URL;
  setup: (ctx: ServiceContext) => Promise<ServiceParts> | ServiceParts;
  logSink?: LogSink;
  hostname?: string;
  /** How long start-up waits for Postgres and NATS to answer. */
  startupTimeoutMs?: number;
  /** Off only in tests that simulate a crash between commit and publish. */
  relay?: boolean;
}

/** Starts a service: database and migrations, streams and consumer, routes, relay, HTTP server. */
export async function startService(options: StartOptions): Promise<RunningService> {
  const { name, config } = options;
  const log = createLogger(name, config.LOG_LEVEL, options.logSink);
  if (config.JWT_SECRET === DEV_JWT_SECRET) {
    log.warn("JWT_SECRET is the development default; set it outside local development");
  }
  const metrics = createMetrics();
  // Where a process's memory goes: the resident set, and the JavaScript heap inside it.
  metrics.gauge("process_resident_memory_bytes", "Resident set size", () => Deno.memoryUsage().rss);
  metrics.gauge(
    "process_heap_used_bytes",
    "JavaScript heap in use",
    () => Deno.memoryUsage().heapUsed,
  );
  metrics.gauge(
    "process_heap_total_bytes",
    "JavaScript heap reserved",
    () => Deno.memoryUsage().heapTotal,
  );
  metrics.gauge(
    "process_external_memory_bytes",
    "Memory of objects outside the JavaScript heap (buffers)",
    () => Deno.memoryUsage().external,
  );

  // Dependencies may still be starting (compose, a reboot): wait for them instead of crashing.
  const waitFor = <T>(what: string, fn: () => Promise<T>) =>
    retry(fn, {
      timeoutMs: options.startupTimeoutMs ?? 60_000,
      onRetry: (err, attempt, delayMs) =>
        log.warn(`waiting for ${what}`, { err, attempt, delayMs }),
    });
  await waitFor("postgres", () => ensureDatabase(config.DATABASE_URL));
  const sql = openDatabase(config.DATABASE_URL);
  const applied = await migrate(sql, [
    ...(await sharedMigrations()),
    ...(await readMigrations(options.migrations)),
  ]);
  if (applied.length) log.info("migrations applied", { applied });

  const nc = await waitFor("nats", () => connectNats(config.NATS_URL, name));
  const names = streamNames(config.NATS_STREAM, config.NATS_SUBJECT_PREFIX);
  await waitFor("jetstream", () => ensureStreams(nc, names, config.NATS_STREAM_REPLICAS));
  const consumerCfg = consumerConfig(names, name);
  await ensureConsumer(nc, names.stream, consumerCfg);
  const js = jetstream(nc);

  const recordRequest = requestRecorder(log, metrics);
  const app = createBaseApp({ service: name, log, metrics, recordRequest });
  const parts = await options.setup({ sql, nc, js, names, log, metrics, app, recordRequest });
  mountReadiness(app, {
    postgres: () => sql`select 1`,
    nats: () => nc.isClosed() ? Promise.reject(new Error("connection closed")) : nc.flush(),
    ...parts.readiness,
  });
  mountApiDocs(app, `${name} API`);

  const consumed = metrics.counter(
    "saga_events_consumed_total",
    "Consumed events by outcome (processed, retried, dead_lettered) and type",
  );
  const redeliveries = metrics.counter(
    "saga_event_redeliveries_total",
    "Deliveries of events that had been delivered before",
  );
  const jsm = await jetstreamManager(nc);
  metrics.gauge(
    "saga_consumer_pending",
    "Events not yet delivered to this service's consumer",
    async () => (await jsm.consumers.info(names.stream, consumerCfg.durable_name)).num_pending,
  );
  metrics.gauge(
    "saga_consumer_ack_pending",
    "Events delivered and not yet acknowledged",
    async () => (await jsm.consumers.info(names.stream, consumerCfg.durable_name)).num_ack_pending,
  );
  metrics.gauge(
    "saga_dead_letters",
    "Events in the dead-letter stream",
    async () => (await jsm.streams.info(names.deadLetterStream)).state.messages,
  );
  const consumer = new EventConsumer({
    js,
    stream: names.stream,
    durable: consumerCfg.durable_name,
    prefix: names.prefix,
    log,
    handler: parts.handler,
    onOutcome: (outcome, event, deliveryCount) => {
      const type = event?.type ?? "unparseable";
      consumed.inc({ outcome, type });
      if (deliveryCount > 1) redeliveries.inc({ type });
    },
  });
  const published = metrics.counter("outbox_published_total", "Events published from the outbox");
  const relay = new OutboxRelay({
    sql,
    js,
    log,
    beforePublish: parts.beforePublish,
    onPublished: (count) => published.inc({}, count),
  });
  metrics.gauge(
    "outbox_backlog",
    "Unsent outbox rows",
    async () => (await outboxBacklog(sql)).count,
  );
  metrics.gauge(
    "outbox_oldest_age_seconds",
    "Age of the oldest unsent outbox row",
    async () => (await outboxBacklog(sql)).oldestAgeMs / 1000,
  );

  if (options.relay !== false) await relay.start();
  consumer.start();
  const server = Deno.serve({
    port: config.PORT,
    hostname: options.hostname ?? "0.0.0.0",
    onListen: () => {},
  }, parts.fastPath ? withFastPath(parts.fastPath, app.fetch) : app.fetch);
  const port = server.addr.port;
  log.info(`${name} listening`, { port, database: redactUrl(config.DATABASE_URL) });

  return {
    port,
    async stop() {
      await parts.beforeStop?.();
      await server.shutdown();
      await consumer.stop();
      await relay.stop();
      await parts.close?.();
      await nc.drain().catch(() => nc.close());
      await sql.end({ timeout: 5 });
    },
  };
}

/** The entry point of a service process: config errors in one line, start, stop on signals. */
export async function runMain<C extends ServiceConfig>(
  name: string,
  loadConfig: (env: Record<string, string | undefined>) => C,
  start: (config: C) => Promise<RunningService>,
): Promise<void> {
  let config: C;
  try {
    config = loadConfig(Deno.env.toObject());
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    console.error(`${name}: ${err.message}`);
    Deno.exit(1);
  }
  const log = createLogger(name, config.LOG_LEVEL);
  let service: RunningService;
  try {
    service = await start(config);
  } catch (err) {
    log.error("start-up failed", { err });
    Deno.exit(1);
  }
  exitOnSignal(service.stop, log);
}
