/** What tests ask of the services' config schemas. */
import type { z } from "zod";

/** Names of the variables in `shape` that have neither a default nor are optional. */
export function requiredEnvNames(shape: z.ZodRawShape): string[] {
  return Object.entries(shape)
    .filter(([, schema]) => !(schema as z.ZodType).safeParse(undefined).success)
    .map(([name]) => name);
}
