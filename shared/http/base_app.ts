/**
 * The app both services start from: request id, access log and latency metric, body limit,
 * problem+json for every error and unknown route, `/health/live` and `/metrics`.
 */
import { OpenAPIHono } from "@hono/zod-openapi";
import { bodyLimit } from "hono/body-limit";
import { badRequest, fieldErrors, problem } from "../errors.ts";
import { HEADERS } from "../events.ts";
import type { Logger } from "../log.ts";
import type { Metrics } from "../metrics.ts";
import type { AppEnv } from "./app_env.ts";
import { handleError, problemResponse } from "./error_handler.ts";
import { requestIdFor } from "./request_id.ts";
import { type RecordRequest, requestRecorder } from "./request_log.ts";

/** Largest request body either service accepts. */
export const MAX_BODY_BYTES = 64 * 1024;

/** Options of createBaseApp. */
export interface BaseAppOptions {
  service: string;
  log: Logger;
  metrics: Metrics;
  /** Shared with a fast path; made from `log` and `metrics` when not given. */
  recordRequest?: RecordRequest;
}

/**
 * The app both services start from: request id, access log and latency metric, body limit,
 * problem+json for every error and for unknown routes, validation errors listed per field.
 */
export function createBaseApp(
  { service, log, metrics, recordRequest = requestRecorder(log, metrics) }: BaseAppOptions,
): OpenAPIHono<AppEnv> {
  const app = new OpenAPIHono<AppEnv>({
    defaultHook: (result) => {
      if (!result.success) {
        throw badRequest("request validation failed", fieldErrors(result.error.issues));
      }
    },
  });
  const limitBody = bodyLimit({
    maxSize: MAX_BODY_BYTES,
    onError: (c) =>
      problemResponse(
        c,
        problem(413, "payload-too-large", `the body is larger than ${MAX_BODY_BYTES} bytes`),
      ),
  });
  // One middleware for the request id, the body limit, the latency metric and the access log:
  // every layer costs on the read path, which carries most of the traffic.
  app.use(async (c, next) => {
    const started = performance.now();
    const requestId = requestIdFor(c.req.header(HEADERS.requestId));
    c.set("requestId", requestId);
    c.header(HEADERS.requestId, requestId);
    // GET and HEAD carry no body, so the reads skip the limit's work.
    if (c.req.method === "GET" || c.req.method === "HEAD") await next();
    else {
      const refused = await limitBody(c, next);
      if (refused instanceof Response) c.res = refused;
    }
    recordRequest({
      requestId,
      method: c.req.method,
      path: c.req.path,
      route: c.req.routePath === "/*" ? "unmatched" : c.req.routePath,
      status: c.res.status,
      started,
      userId: c.get("userId"),
    });
  });
  app.onError(handleError(log));
  app.notFound((c) =>
    problemResponse(c, problem(404, "not-found", `no route for ${c.req.method} ${c.req.path}`))
  );
  app.get("/health/live", (c) => c.json({ status: "ok", service }));
  app.get("/metrics", async (c) =>
    c.body(await metrics.render(), 200, {
      "Content-Type": "text/plain; version=0.0.4; charset=utf-8",
    }));
  return app;
}
