/** Environment configuration validated with zod; a bad variable is reported in one line naming it. */
import { z } from "zod";
import { RETRY_BUDGET } from "./consumer.ts";
import type { LogLevel } from "./log.ts";

/** Thrown when the environment does not satisfy a service's schema. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

/** Development-only JWT secret; using it prints a warning at start. */
export const DEV_JWT_SECRET = "dev-only-secret-change-me-0123456789";

const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;

/** Variables both services read, with their defaults. */
export const commonEnv = {
  NATS_URL: z.string().regex(
    /^(nats|tls|ws|wss):\/\/[^\s,]+(,\s*(nats|tls|ws|wss):\/\/[^\s,]+)*$/,
    "must be a nats:// URL, or several separated by commas",
  ).default("nats://127.0.0.1:4222"),
  JWT_SECRET: z.string().min(16, "must be at least 16 characters").default(DEV_JWT_SECRET),
  /** Unset: derived from NATS_SUBJECT_PREFIX (see streamNames in jetstream.ts), `SAGA` for `saga`. */
  NATS_STREAM: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, "must be letters, digits, _ or -")
    .optional(),
  /** Copies of each stream a NATS cluster keeps (3 on a three-node cluster); 1 on a single server. */
  NATS_STREAM_REPLICAS: z.coerce.number().int("must be an integer").min(1, "must be 1 to 5")
    .max(5, "must be 1 to 5").default(1),
  NATS_SUBJECT_PREFIX: z.string().regex(
    /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/,
    "must be subject tokens of letters, digits, _ or - separated by dots",
  ).refine(
    // `<prefix>_dlq.>` and `<prefix>_live.>` are a deployment's own: another prefix must not be one.
    (p) => !/_(dlq|live)$/i.test(p),
    "must not end in _dlq or _live (the dead letters and live updates of another prefix)",
  ).default("saga"),
  LOG_LEVEL: z.enum(LOG_LEVELS).default("info"),
  /**
   * Deno's own tracing switch (shared/tracing.ts): `true` exports traces over OTLP. Deno reads it,
   * and the OTEL_ variables below, when the process starts; they are validated here too so that a
   * typo stops the service instead of silently turning tracing off.
   */
  OTEL_DENO: z.enum(["true", "false"], "must be true or false").default("false"),
  /** Where traces go (OTLP over HTTP; Deno appends /v1/traces), e.g. http://jaeger:4318. */
  OTEL_EXPORTER_OTLP_ENDPOINT: z.url({ protocol: /^https?$/, error: "must be an http(s):// URL" })
    .optional(),
  /** The `service.name` of this process' spans: set it to `dialogs` or `counters`. */
  OTEL_SERVICE_NAME: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, "must be a short name").optional(),
  /** Deliveries of an event before one that still fails is dead-lettered (RETRY_BUDGET). */
  EVENT_RETRY_BUDGET: z.coerce.number().int("must be an integer").min(1).max(1_000).default(
    RETRY_BUDGET,
  ),
};

/** A Postgres URL variable with its default. */
export function databaseUrl(defaultUrl: string) {
  return z.string().regex(/^postgres(ql)?:\/\/\S+$/, "must be a postgres:// URL").default(
    defaultUrl,
  );
}

/** A TCP port variable with its default. */
export function port(defaultPort: number) {
  return z.coerce.number().int("must be an integer").min(0).max(65535).default(defaultPort);
}

/**
 * Parses `env` with `shape`. Empty strings count as unset so `FOO=` falls back to the default.
 * Throws a ConfigError whose message is one line naming the first bad variable.
 */
export function parseEnv<S extends z.ZodRawShape>(
  shape: S,
  env: Record<string, string | undefined>,
): z.infer<z.ZodObject<S>> {
  const picked: Record<string, string | undefined> = {};
  for (const key of Object.keys(shape)) {
    const value = env[key];
    picked[key] = value === "" ? undefined : value;
  }
  const result = z.object(shape).safeParse(picked);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const name = String(issue.path[0] ?? "environment");
  const shown = picked[name] === undefined ? "unset" : JSON.stringify(picked[name]);
  throw new ConfigError(`invalid environment variable ${name} (${shown}): ${issue.message}`);
}

/** The configuration every service has (commonEnv plus its own database and port). */
export interface ServiceConfig {
  DATABASE_URL: string;
  NATS_URL: string;
  /** Unset: derived from NATS_SUBJECT_PREFIX (streamNames). */
  NATS_STREAM?: string;
  NATS_SUBJECT_PREFIX: string;
  /** Copies of each stream (1 unless told). */
  NATS_STREAM_REPLICAS?: number;
  JWT_SECRET: string;
  PORT: number;
  /** Open PORT with SO_REUSEPORT, so several processes of the service share it (Linux). */
  REUSE_PORT?: boolean;
  LOG_LEVEL: LogLevel;
  /** Deliveries of an event before one that still fails is dead-lettered. */
  EVENT_RETRY_BUDGET: number;
}
