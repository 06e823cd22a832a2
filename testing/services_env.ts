/** The environment bench and chaos start the services' processes with: one deployment's names. */

/** What one deployment's processes share, and each service's own database. */
export interface Deployment {
  natsUrl: string;
  /** NATS_STREAM. */
  stream: string;
  /** NATS_SUBJECT_PREFIX; also counters' Redis key prefix, `<prefix>:`. */
  prefix: string;
  /** JWT_SECRET. */
  secret: string;
  databaseUrls: Record<"dialogs" | "counters", string>;
  redisUrl: string;
}

/** What every process of the deployment reads: NATS, its stream and prefix, the secret, warn logs. */
export function sharedEnv(
  d: Pick<Deployment, "natsUrl" | "stream" | "prefix" | "secret">,
): Record<string, string> {
  return {
    NATS_URL: d.natsUrl,
    NATS_STREAM: d.stream,
    NATS_SUBJECT_PREFIX: d.prefix,
    JWT_SECRET: d.secret,
    LOG_LEVEL: "warn",
  };
}

/** One service's environment: the shared part, its database and, for counters, its Redis. */
export function serviceEnv(kind: "dialogs" | "counters", d: Deployment): Record<string, string> {
  if (kind === "dialogs") return { ...sharedEnv(d), DATABASE_URL: d.databaseUrls.dialogs };
  return {
    ...sharedEnv(d),
    DATABASE_URL: d.databaseUrls.counters,
    REDIS_URL: d.redisUrl,
    REDIS_KEY_PREFIX: `${d.prefix}:`,
    // Off: a repair would hide the drift a chaos run exists to find, and cost a bench run time.
    RECONCILE_INTERVAL_MS: "0",
  };
}
