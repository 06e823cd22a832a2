/** The counters service's environment schema. */
import { z } from "zod";
import { commonEnv, databaseUrl, parseEnv, port } from "../shared/config.ts";

/** Every variable counters reads, with its default. */
export const countersEnv = {
  ...commonEnv,
  DATABASE_URL: databaseUrl("postgres://postgres@127.0.0.1:5432/counters"),
  PORT: port(8082),
  REDIS_URL: z.string().regex(/^rediss?:\/\/\S+$/, "must be a redis:// URL").default(
    "redis://127.0.0.1:6379",
  ),
  REDIS_KEY_PREFIX: z.string().max(100).default("counters:"),
  RECONCILE_INTERVAL_MS: z.coerce.number().int("must be an integer").min(0).default(60_000),
  CORS_ORIGINS: z.string().default("http://localhost:8081,http://127.0.0.1:8081").transform((v) =>
    v.split(",").map((o) => o.trim()).filter(Boolean)
  ).pipe(z.array(z.url({ error: "must be a comma-separated list of origins" }))),
  /**
   * `true`: the server's socket is opened with SO_REUSEPORT, so several counters processes (each an
   * instance of its own) share PORT on one machine and the kernel spreads connections among them.
   */
  REUSE_PORT: z.enum(["true", "false"], "must be true or false").default("false")
    .transform((v) => v === "true"),
  SSE_HEARTBEAT_MS: z.coerce.number().int("must be an integer").min(100).max(15_000).default(
    15_000,
  ),
};

/** The resolved configuration of counters. */
export type CountersConfig = z.infer<z.ZodObject<typeof countersEnv>>;

/** Parses counters' configuration from `env`; throws a one-line ConfigError when it is bad. */
export function loadCountersConfig(env: Record<string, string | undefined>): CountersConfig {
  return parseEnv(countersEnv, env);
}
