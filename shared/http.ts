/** The HTTP pieces both services share: the base app, problem+json errors, health, metrics, docs. */
import { OpenAPIHono } from "@hono/zod-openapi";
import type { Context, ErrorHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { z } from "zod";
import { AppError, badRequest, fieldErrors, type Problem, problem } from "./errors.ts";
import { isUnavailableDbError } from "./db.ts";
import { HEADERS } from "./events.ts";
import type { Logger } from "./log.ts";
import { LATENCY_BUCKETS, type Metrics } from "./metrics.ts";

/** Per-request variables every route can read. */
export type AppVariables = { requestId: string; userId: string; tokenExpiresAt?: number };

/** The Hono environment of both services. */
export type AppEnv = { Variables: AppVariables };

/** What a request id taken from the client may contain (else a new one is made). */
const REQUEST_ID = /^[\w\-=]+$/;

/** Largest request body either service accepts. */
export const MAX_BODY_BYTES = 64 * 1024;

/** Answers `problem` as application/problem+json. */
export function problemResponse(c: Context, body: Problem): Response {
  return c.body(JSON.stringify(body), body.status as ContentfulStatusCode, {
    "Content-Type": "application/problem+json",
  });
}

const HTTP_TYPES: Record<number, string> = {
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
      const detail = err.message || "the request could not be processed";
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

/** The request id a response carries: the client's own when it is well-formed, else a new one. */
export function requestIdFor(given: string | null | undefined): string {
  return given && given.length <= 255 && REQUEST_ID.test(given) ? given : crypto.randomUUID();
}

/** What an answered request leaves behind. */
export interface AnsweredRequest {
  requestId: string;
  method: string;
  path: string;
  /** The route's pattern, the latency metric's label (`unmatched` when no route matched). */
  route: string;
  status: number;
  /** performance.now() when the request arrived. */
  started: number;
  userId?: string;
}

/** Records an answered request: its latency in the metric and, at `info`, an access-log line. */
export type RecordRequest = (request: AnsweredRequest) => void;

/** The recorder of both the Hono app and a fast path, so both count in the same metric. */
export function requestRecorder(log: Logger, metrics: Metrics): RecordRequest {
  const latency = metrics.histogram(
    "http_request_duration_seconds",
    "HTTP request latency by route, method and status",
    LATENCY_BUCKETS,
  );
  return ({ requestId, method, path, route, status, started, userId }) => {
    const seconds = (performance.now() - started) / 1000;
    latency.observe(seconds, { route, method, status: String(status) });
    // Building the fields of a line the level drops would cost on the read path.
    if (!log.enabled("info") || path.startsWith("/health") || path === "/metrics") return;
    log.info("request", {
      requestId,
      method,
      path,
      status,
      durationMs: Math.round(seconds * 10_000) / 10,
      userId,
    });
  };
}

/**
 * A handler tried before the Hono app, for the hottest requests: it answers a Response (or a promise
 * of one), or undefined (also from the promise) to leave the request to the app.
 */
export type FastPath = (req: Request) => Response | Promise<Response | undefined> | undefined;

/** `fetch` with `fast` tried first. */
export function withFastPath<A extends unknown[]>(
  fast: FastPath,
  fetch: (req: Request, ...rest: A) => Response | Promise<Response>,
): (req: Request, ...rest: A) => Response | Promise<Response> {
  return (req, ...rest) => {
    const answered = fast(req);
    if (answered === undefined) return fetch(req, ...rest);
    if (answered instanceof Response) return answered;
    return answered.then((res) => res ?? fetch(req, ...rest));
  };
}

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

/** A named readiness check; resolves when the dependency answers. */
export type ReadinessCheck = () => Promise<unknown>;

/** Mounts `/health/ready`: 200 when every check answers within the timeout, else 503 naming each failure. */
export function mountReadiness(
  app: OpenAPIHono<AppEnv>,
  checks: Record<string, ReadinessCheck>,
  timeoutMs = 2_000,
): void {
  app.get("/health/ready", async (c) => {
    const results = await Promise.all(
      Object.entries(checks).map(async ([name, check]) => {
        try {
          await withTimeout(check(), timeoutMs, `${name} did not answer within ${timeoutMs} ms`);
          return [name, "ok"] as const;
        } catch (err) {
          return [name, err instanceof Error ? err.message : String(err)] as const;
        }
      }),
    );
    const failing = results.filter(([, r]) => r !== "ok");
    const checked = Object.fromEntries(results);
    if (!failing.length) return c.json({ status: "ok", checks: checked });
    const detail = `not ready: ${failing.map(([n, r]) => `${n} (${r})`).join(", ")}`;
    return problemResponse(c, { ...problem(503, "not-ready", detail), checks: checked } as Problem);
  });
}

/** Mounts `/openapi.json` and a `/docs` page rendering it. */
export function mountApiDocs(app: OpenAPIHono<AppEnv>, title: string): void {
  app.doc31("/openapi.json", {
    openapi: "3.1.0",
    info: { title, version: "1.0.0" },
  });
  app.openAPIRegistry.registerComponent("securitySchemes", "bearer", {
    type: "http",
    scheme: "bearer",
    bearerFormat: "JWT",
  });
  app.get("/docs", (c) =>
    c.html(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="https://unpkg.com/swagger-ui-dist@5/swagger-ui.css"></head>
<body><div id="ui"><p>Loading the API description from <a href="/openapi.json">/openapi.json</a>…</p></div>
<script src="https://unpkg.com/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>window.onload = () => SwaggerUIBundle({ url: "/openapi.json", dom_id: "#ui" });</script>
</body></html>`));
}

/** Rejects with `message` if `promise` has not settled within `ms`. */
export function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
