/** A service's connections to Postgres and NATS: opened waiting for both, checked, closed. */
import { jetstream, type JetStreamClient } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { ConfigError, type ServiceConfig } from "../config.ts";
import { ensureDatabase, openDatabase, type Sql } from "../db.ts";
import type { ReadinessCheck } from "../http/readiness.ts";
import { connectNats, ensureStreams, type StreamNames, streamNames } from "../jetstream.ts";
import type { Logger } from "../log.ts";
import { retry } from "../retry.ts";

/** How long start-up waits for Postgres and NATS to answer. */
const STARTUP_TIMEOUT_MS = 60_000;

/** A service's open connections and the names of its streams. */
export interface Connections {
  sql: Sql;
  nc: NatsConnection;
  js: JetStreamClient;
  names: StreamNames;
}

/**
 * Creates the database if missing and opens it, then connects to NATS and creates or updates the
 * streams. Dependencies may still be starting (compose, a reboot): it waits for them instead of
 * crashing, up to a minute, except for a ConfigError (a stream of another deployment).
 */
export async function openConnections(
  service: "dialogs" | "counters",
  config: ServiceConfig,
  log: Logger,
): Promise<Connections> {
  const waitFor = <T>(what: string, fn: () => Promise<T>) => waitAtStartup(log, what, fn);
  await waitFor("postgres", () => ensureDatabase(config.DATABASE_URL));
  const sql = openDatabase(config.DATABASE_URL);
  const nc = await waitFor("nats", () => connectNats(config.NATS_URL, service));
  const names = streamNames(config.NATS_STREAM, config.NATS_SUBJECT_PREFIX);
  await waitFor("jetstream", () => ensureStreams(nc, names, config.NATS_STREAM_REPLICAS));
  return { sql, nc, js: jetstream(nc), names };
}

/**
 * Runs a start-up step, waiting for its dependency (retried with backoff, up to a minute) instead of
 * crashing, except for a ConfigError (a stream of another deployment will not become ours by
 * waiting). NATS may be restarting or electing a leader just as a service starts.
 */
export function waitAtStartup<T>(log: Logger, what: string, fn: () => Promise<T>): Promise<T> {
  return retry(fn, {
    timeoutMs: STARTUP_TIMEOUT_MS,
    retryIf: (err) => !(err instanceof ConfigError),
    onRetry: (err, attempt, delayMs) => log.warn(`waiting for ${what}`, { err, attempt, delayMs }),
  });
}

/** The readiness checks of the connections: Postgres and NATS answer. */
export function connectionChecks({ sql, nc }: Connections): Record<string, ReadinessCheck> {
  return {
    postgres: () => sql`select 1`,
    nats: () => nc.isClosed() ? Promise.reject(new Error("connection closed")) : nc.flush(),
  };
}

/** Drains NATS (what is buffered is published), then closes Postgres; last on stop. */
export async function closeConnections({ sql, nc }: Connections): Promise<void> {
  await nc.drain().catch(() => nc.close());
  await sql.end({ timeout: 5 });
}
