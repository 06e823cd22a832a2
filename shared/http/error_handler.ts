/** Every error a route throws, answered as RFC 9457 application/problem+json. */
import type { Context, ErrorHandler } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { z } from "zod";
import { isUnavailableDbError } from "../db.ts";
import { AppError, fieldErrors, type Problem, problem } from "../errors.ts";
import type { Logger } from "../log.ts";
import { type ProblemType } from "../problems.ts";
import type { AppEnv } from "./app_env.ts";

/**
 * Answers `problem` as application/problem+json, its `type` resolved against the request's URL:
 * the page that explains it is served by this service (shared/problems.ts).
 */
export function problemResponse(c: Context, body: Problem): Response {
  const type = body.type.startsWith("/") ? new URL(body.type, c.req.url).href : body.type;
  return c.body(JSON.stringify({ ...body, type }), body.status as ContentfulStatusCode, {
    "Content-Type": "application/problem+json",
  });
}

const HTTP_TYPES: Record<number, ProblemType> = {
  400: "bad-request",
  401: "unauthorized",
  404: "not-found",
  405: "method-not-allowed",
  413: "payload-too-large",
  415: "unsupported-media-type",
};

/** One onError for the whole app: AppError, HTTPException and zod errors become problems; the rest 500. */
export function handleError(log: Logger): ErrorHandler<AppEnv> {
  return (err, c) => {
    if (err instanceof AppError) {
      return problemResponse(c, problem(err.status, err.type, err.message, err.errors));
    }
    if (err instanceof HTTPException) {
      const status = err.status;
      // Hono's own words for a body that is not JSON say neither what was sent nor what is wanted.
      const detail = status === 415
        ? `the body must be JSON: send it with Content-Type: application/json (got ${
          c.req.header("content-type")?.slice(0, 100) || "no Content-Type"
        })`
        : err.message || "the request could not be processed";
      return problemResponse(c, problem(status, HTTP_TYPES[status] ?? "http-error", detail));
    }
    if (err instanceof z.ZodError) {
      return problemResponse(
        c,
        problem(400, "validation-error", "request validation failed", fieldErrors(err.issues)),
      );
    }
    if (isUnavailableDbError(err)) {
      log.warn("database unavailable", { requestId: c.get("requestId"), err, path: c.req.path });
      c.header("Retry-After", "1");
      return problemResponse(
        c,
        problem(503, "unavailable", "the database is unavailable for a moment; retry the request"),
      );
    }
    log.error("unhandled error", {
      requestId: c.get("requestId"),
      err,
      stack: err instanceof Error ? err.stack : undefined,
      method: c.req.method,
      path: c.req.path,
    });
    return problemResponse(
      c,
      problem(500, "internal-error", "an unexpected error occurred; quote the X-Request-ID"),
    );
  };
}
