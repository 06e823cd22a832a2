/** OpenAPI schemas both services' documents share. */
import { z } from "@hono/zod-openapi";

/** The problem+json body every error answers with. */
export const ProblemSchema = z.object({
  type: z.string(),
  title: z.string(),
  status: z.number().int(),
  detail: z.string(),
  errors: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
}).openapi("Problem");
