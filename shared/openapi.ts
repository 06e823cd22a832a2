/** OpenAPI schemas both services' documents share. */
import { z } from "@hono/zod-openapi";

/** One invalid field of a request, as listed in a validation problem. */
export const FieldErrorSchema = z.object({ path: z.string(), message: z.string() });

/** The problem+json body every error answers with (RFC 9457). */
export const ProblemSchema = z.object({
  type: z.string(),
  title: z.string(),
  status: z.number().int(),
  detail: z.string(),
  errors: z.array(FieldErrorSchema).optional(),
}).openapi("Problem");

/** An error response of a route in the OpenAPI document: a problem+json body. */
export function problemDoc(description: string) {
  return { description, content: { "application/problem+json": { schema: ProblemSchema } } };
}

/** The error responses every authenticated route has. */
export const COMMON_PROBLEMS = {
  400: problemDoc("Invalid input"),
  401: problemDoc("Missing or invalid token"),
};
