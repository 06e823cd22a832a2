/** Postgres connections: creating a service's database when it is missing, and opening a pool. */
import postgres from "postgres";

/** A postgres.js pool or transaction. */
export type Sql = postgres.Sql;
/** A postgres.js transaction handle. */
export type Tx = postgres.TransactionSql;

/** Opens a pool; `max` bounds the waiting queue as well as the connections. */
export function openDatabase(url: string, options: { max?: number } = {}): Sql {
  return postgres(url, {
    max: options.max ?? 10,
    onnotice: () => {},
    connect_timeout: 10,
    idle_timeout: 60,
    transform: { undefined: null },
  });
}

/** How long a statement of a pipelinedTransaction waits for a lock by default (lock_timeout). */
const DEFAULT_LOCK_TIMEOUT_MS = 2_000;
/** How long a statement of a pipelinedTransaction may run by default (statement_timeout). */
const DEFAULT_STATEMENT_TIMEOUT_MS = 5_000;

/** Options of pipelinedTransaction. */
export interface TransactionOptions {
  /** A statement waiting longer than this for a lock fails with 55P03 (lock_timeout). */
  lockTimeoutMs?: number;
  /** A statement running longer than this is cancelled with 57014 (statement_timeout). */
  statementTimeoutMs?: number;
}

/**
 * Runs `fn` in a transaction with fewer round trips: statements fn starts together (`Promise.all`)
 * travel together, and those it hands to `withCommit` are sent at once without waiting for their
 * results, so they travel with the COMMIT. Their failure fails the transaction (Postgres turns the
 * COMMIT into a rollback) and is rethrown. The saga is a chain of round trips, and on a busy or a
 * sleepy machine each costs (docs/performance.md).
 *
 * The transaction's lock_timeout and statement_timeout (`options`, 2 s and 5 s by default) travel
 * with fn's first statement, so a handler stuck behind a lock fails (a transient error, redelivered)
 * instead of holding its connection and its event.
 */
export async function pipelinedTransaction<T>(
  sql: Sql,
  fn: (tx: Tx, withCommit: (statement: PromiseLike<unknown>) => void) => Promise<T>,
  options: TransactionOptions = {},
): Promise<T> {
  const lockTimeoutMs = timeoutOption(
    "lockTimeoutMs",
    options.lockTimeoutMs,
    DEFAULT_LOCK_TIMEOUT_MS,
  );
  const statementTimeoutMs = timeoutOption(
    "statementTimeoutMs",
    options.statementTimeoutMs,
    DEFAULT_STATEMENT_TIMEOUT_MS,
  );
  const lockTimeout = `${lockTimeoutMs}ms`;
  const statementTimeout = `${statementTimeoutMs}ms`;
  const tail: Promise<unknown>[] = [];
  const track = (statement: PromiseLike<unknown>) => {
    // Awaiting a postgres.js statement is what sends it; the catch keeps a failure after an
    // early exit of fn from going unhandled (sql.begin has rolled back by then anyway).
    const sent = Promise.resolve(statement);
    sent.catch(() => {});
    tail.push(sent);
  };
  // sql.begin, not a reserved connection: postgres.js 3.4.9 hands a reserved connection that died
  // mid-transaction back to the pool, and the next write on it crashes the process.
  const result = await sql.begin((tx) => {
    // Executed before fn runs, so it is the transaction's first statement and is pipelined with
    // fn's first one: no round trip of its own.
    track(
      tx`select set_config('lock_timeout', ${lockTimeout}, true),
                set_config('statement_timeout', ${statementTimeout}, true)`.execute(),
    );
    return fn(tx, track);
  }) as T;
  await Promise.all(tail);
  return result;
}

function timeoutOption(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value <= 0) {
    throw new RangeError(`${name} must be a positive integer of milliseconds, got ${value}`);
  }
  return value;
}

/** Creates the database named in `url` if it does not exist (safe when several start at once). */
export async function ensureDatabase(url: string): Promise<void> {
  const target = new URL(url);
  const name = decodeURIComponent(target.pathname.replace(/^\//, ""));
  if (!name) throw new Error(`database URL names no database: ${redactUrl(url)}`);
  const admin = new URL(url);
  admin.pathname = "/postgres";
  const sql = postgres(admin.toString(), { max: 1, onnotice: () => {}, connect_timeout: 10 });
  try {
    const [found] = await sql`select 1 from pg_database where datname = ${name}`;
    if (found) return;
    try {
      await sql.unsafe(`create database ${quoteIdent(name)}`);
    } catch (err) {
      // 42P04 duplicate_database and 23505: another instance created it first.
      const code = (err as { code?: string }).code;
      if (code !== "42P04" && code !== "23505") throw err;
    }
  } finally {
    await sql.end();
  }
}

/** Quotes a Postgres identifier. */
export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** The URL without its password, for logs and errors. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return "(unparseable URL)";
  }
}

/**
 * True when a Postgres error is a refusal that retrying cannot fix (integrity or data exception).
 * A lock timeout (55P03) or a cancelled statement (57014) is transient: retried, never refused.
 */
export function isPermanentDbError(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return typeof code === "string" && /^(22|23)[0-9A-Z]{3}$/.test(code);
}

const CONNECTION_ERRORS = new Set([
  "CONNECTION_CLOSED",
  "CONNECTION_ENDED",
  "CONNECTION_DESTROYED",
  "CONNECT_TIMEOUT",
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
  "57P01", // admin_shutdown: the connection was terminated
  "57P03", // cannot_connect_now
  "53300", // too_many_connections
]);

/** True when a Postgres error means the database is unreachable for now, not that the query is wrong. */
export function isUnavailableDbError(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return typeof code === "string" && CONNECTION_ERRORS.has(code);
}
