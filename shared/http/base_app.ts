/**
 * The app both services start from: request id, access log and latency metric, body limit,
 * problem+json for every error and unknown route, `/health/live` and `/metrics`.
 */
import type { OpenAPIHono } from "@hono/zod-openapi";
import type { Context } from "hono";
import { bodyLimit } from "hono/body-limit";
import { badRequest, fieldErrors, notFound, problem } from "../errors.ts";
import { HEADERS } from "../events.ts";
import type { Logger } from "../log.ts";
import type { Metrics } from "../metrics.ts";
import { isProblemType, problemIndexPage, problemPage } from "../problems.ts";
import type { AppEnv } from "./app_env.ts";
import { handleError, problemResponse } from "./error_handler.ts";
import { requestIdFor } from "./request_id.ts";
import { type RecordRequest, requestRecorder } from "./request_log.ts";
import { ServiceApp } from "./service_app.ts";

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
  const app = new ServiceApp({
    defaultHook: (result) => {
      if (!result.success) {
        // `data` is the input that failed: a field absent from it is named as required.
        const input = (result as { data?: unknown }).data;
        throw badRequest("request validation failed", fieldErrors(result.error.issues, input));
      }
    },
  });
  const tooLarge = (c: Context) =>
    problemResponse(
      c,
      problem(413, "payload-too-large", `the body is larger than ${MAX_BODY_BYTES} bytes`),
    );
  const limitBody = bodyLimit({ maxSize: MAX_BODY_BYTES, onError: tooLarge });
  // One middleware for the request id, the body limit, the latency metric and the access log:
  // every layer costs on the read path, which carries most of the traffic.
  app.use(async (c, next) => {
    const started = performance.now();
    const requestId = requestIdFor(c.req.header(HEADERS.requestId));
    c.set("requestId", requestId);
    // GET and HEAD carry no body, so the reads skip the limit's work.
    const method = c.req.method;
    if (method === "GET" || method === "HEAD") await next();
    else {
      // A declared length decides without touching the body: reading `req.body` makes Deno build
      // a stream that the JSON parser then does without. Without one, the limit counts the bytes.
      const length = declaredLength(c.req.raw.headers);
      if (length === undefined) {
        const refused = await limitBody(c, next);
        if (refused instanceof Response) c.res = refused;
      } else if (length > MAX_BODY_BYTES) c.res = tooLarge(c);
      else await next();
    }
    // Added to the answer once it is made: a header set before it makes Hono build the answer's
    // headers from a Headers object of its own, which costs more.
    try {
      c.res.headers.set(HEADERS.requestId, requestId);
    } catch {
      // An answer with immutable headers (a fetch() result, say) is copied first.
      const copy = new Response(c.res.body, c.res);
      copy.headers.set(HEADERS.requestId, requestId);
      c.res = undefined;
      c.res = copy;
    }
    recordRequest({
      requestId,
      method,
      path: c.req.path,
      route: c.req.routePath === "/*" ? "unmatched" : c.req.routePath,
      status: c.res.status,
      started,
      userId: c.get("userId"),
    });
  });
  app.onError(handleError(log));
  const allowedMethods = methodsByPath(app);
  app.notFound((c) => {
    // A route that matched and then found nothing (an unknown id, say) is a 404, not a 405.
    const allow = allowedMethods(c.req.path);
    if (allow.length > 0 && !allow.includes(c.req.method)) {
      c.header("Allow", allow.join(", "));
      return problemResponse(
        c,
        problem(
          405,
          "method-not-allowed",
          `${c.req.path} answers ${allow.join(", ")}, not ${c.req.method}`,
        ),
      );
    }
    return problemResponse(
      c,
      problem(404, "not-found", `no route for ${c.req.method} ${c.req.path}`),
    );
  });
  app.get("/problems", (c) => c.html(problemIndexPage(service)));
  app.get("/problems/:type", (c) => {
    const type = c.req.param("type");
    if (!isProblemType(type)) throw notFound(`no problem type ${type}; /problems lists them`);
    return c.html(problemPage(service, type));
  });
  app.get("/health/live", (c) => c.json({ status: "ok", service }));
  app.get("/metrics", async (c) =>
    c.body(await metrics.render(), 200, {
      "Content-Type": "text/plain; version=0.0.4; charset=utf-8",
    }));
  return app;
}

/**
 * A request's Content-Length as Hono's body limit reads it, or undefined when it sends none or
 * also a Transfer-Encoding (then the limit counts the bytes as they come).
 */
export function declaredLength(headers: Headers): number | undefined {
  const length = headers.get("content-length");
  // get(), not has(): Deno answers get() for one header, has() copies them all first.
  if (length === null || headers.get("transfer-encoding") !== null) return undefined;
  return parseInt(length || "0", 10);
}

/**
 * The methods the app's routes answer on a path, for a 405's `Allow` (HEAD wherever GET is), or
 * none. Worked out from the routes at the first miss after a route was added, not per request.
 */
export function methodsByPath(app: OpenAPIHono<AppEnv>): (path: string) => string[] {
  let known = -1;
  let routes: { pattern: RegExp; method: string }[] = [];
  return (path) => {
    if (known !== app.routes.length) {
      known = app.routes.length;
      routes = app.routes
        .filter((r) => r.method !== "ALL" && !r.path.includes("*"))
        .map((r) => ({ pattern: routePattern(r.path), method: r.method }));
    }
    const methods = new Set(routes.filter((r) => r.pattern.test(path)).map((r) => r.method));
    if (methods.has("GET")) methods.add("HEAD");
    return [...methods].sort();
  };
}

/** A Hono route path (`/api/dialog/:peerId/send`) as a regular expression matching whole paths. */
function routePattern(path: string): RegExp {
  const source = path.split("/").map((part) =>
    part.startsWith(":") ? "[^/]+" : part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")
  ).join("/");
  return new RegExp(`^${source}/?$`);
}
