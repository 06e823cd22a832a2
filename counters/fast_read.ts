/**
 * A lean answer for the hottest request, `GET /api/counters`, when everything it needs is already in
 * memory: a token verified before and the user's counters in the in-process cache. Anything else —
 * another route, an Origin (CORS), an unknown token, a cache miss — goes through the full app, which
 * fills those caches; the answer, headers, metric and log line are the same either way.
 */
import type { TokenCache } from "../shared/auth.ts";
import { HEADERS } from "../shared/events.ts";
import { requestIdFor } from "../shared/http.ts";
import type { Logger } from "../shared/log.ts";
import type { Counter, Histogram } from "../shared/metrics.ts";
import { countersBody, type UserCounters } from "./counters.ts";
import type { LocalCache } from "./local_cache.ts";

/** What the fast path reads and reports to. */
export interface FastReadDeps {
  tokens: TokenCache;
  local: LocalCache;
  latency: Histogram;
  cacheLookups: Counter;
  log: Logger;
}

const PATH = "/api/counters";
const BEARER = /^Bearer\s+(\S+)\s*$/i;

/** Wraps a fetch handler with the fast path. */
export function withFastCountersRead(deps: FastReadDeps) {
  // The body of a cache entry is built once; entries are replaced, never changed.
  const bodies = new WeakMap<UserCounters, string>();
  const bodyOf = (counters: UserCounters) => {
    let body = bodies.get(counters);
    if (body === undefined) bodies.set(counters, body = JSON.stringify(countersBody(counters)));
    return body;
  };
  return (next: Deno.ServeHandler): Deno.ServeHandler => (req, info) => {
    if (req.method !== "GET" || req.headers.has("origin")) return next(req, info);
    const url = req.url;
    const pathStart = url.indexOf("/", url.indexOf("//") + 2);
    if (url.slice(pathStart) !== PATH) return next(req, info);
    const token = BEARER.exec(req.headers.get("authorization") ?? "")?.[1];
    const userId = token ? deps.tokens.userOf(token) : undefined;
    const counters = userId ? deps.local.get(userId) : undefined;
    if (!counters) return next(req, info);

    const started = performance.now();
    const id = requestIdFor(req.headers.get(HEADERS.requestId));
    const res = new Response(bodyOf(counters), {
      headers: { "Content-Type": "application/json", [HEADERS.requestId]: id },
    });
    deps.cacheLookups.inc({ result: "local" });
    const seconds = (performance.now() - started) / 1000;
    deps.latency.observe(seconds, { route: PATH, method: "GET", status: "200" });
    if (deps.log.enabled("info")) {
      deps.log.info("request", {
        requestId: id,
        method: "GET",
        path: PATH,
        status: 200,
        durationMs: Math.round(seconds * 10_000) / 10,
        userId,
      });
    }
    return res;
  };
}
