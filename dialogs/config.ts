/** The dialogs service's environment schema. */
import { z } from "zod";
import { commonEnv, databaseUrl, parseEnv, port } from "../shared/config.ts";

/** Every variable dialogs reads, with its default. */
export const dialogsEnv = {
  ...commonEnv,
  DATABASE_URL: databaseUrl("postgres://postgres@127.0.0.1:5432/dialogs"),
  PORT: port(8081),
  SAGA_TIMEOUT_MS: z.coerce.number().int("must be an integer").min(100).max(86_400_000).default(
    30_000,
  ),
  /** Most members a group may have, counting its owner (group sends mention at most 10,000). */
  MAX_GROUP_MEMBERS: z.coerce.number().int("must be an integer").min(2, "must be 2 to 10000")
    .max(10_000, "must be 2 to 10000").default(10_000),
  DEV_LOGIN: z.enum(["true", "false"], "must be true or false").default("false")
    .transform((v) => v === "true"),
  COUNTERS_PUBLIC_URL: z.url({ protocol: /^https?$/, error: "must be an http(s) URL" }).default(
    "http://localhost:8082",
  ),
};

/** The resolved configuration of dialogs. */
export type DialogsConfig = z.infer<z.ZodObject<typeof dialogsEnv>>;

/** Parses dialogs' configuration from `env`; throws a one-line ConfigError when it is bad. */
export function loadDialogsConfig(env: Record<string, string | undefined>): DialogsConfig {
  return parseEnv(dialogsEnv, env);
}
