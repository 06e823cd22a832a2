/**
 * `GET /api/counters` answered before the Hono app, for the request that carries nearly all the read
 * traffic: a bearer token this process verified before, and no `Origin` header (not a browser, so no
 * CORS headers to add). Everything else (another route or method, a new or expired token, a
 * browser, a failed read) is left to the app, which answers it with the same body and headers and
 * handles every error. Profiling showed Hono's routing, context and response building cost about as
 * much CPU per request as the read itself (docs/performance.md).
 */
import { bearerToken, type VerifiedTokens } from "../shared/auth.ts";
import { HEADERS } from "../shared/events.ts";
import type { FastPath } from "../shared/http/fast_path.ts";
import { requestIdFor } from "../shared/http/request_id.ts";
import type { RecordRequest } from "../shared/http/request_log.ts";
import type { CoherentCounters, ComposedCounters } from "./coherence.ts";
import { countersJson } from "./counters.ts";

const ROUTE = "/api/counters";

/** What the fast read path needs: the same tokens, reader and recorder as the app. */
export interface FastCountersReadDeps {
  tokens: VerifiedTokens;
  reader: Pick<CoherentCounters, "read" | "cached">;
  recordRequest: RecordRequest;
}

/** The path of a request URL (`http://host/path?query`), without parsing the whole URL. */
export function pathOf(url: string): string {
  const start = url.indexOf("/", url.indexOf("//") + 2);
  if (start < 0) return "/";
  const query = url.indexOf("?", start);
  return query < 0 ? url.slice(start) : url.slice(start, query);
}

/** Creates the fast path for `GET /api/counters`. */
export function fastCountersRead(deps: FastCountersReadDeps): FastPath {
  const { tokens, reader, recordRequest } = deps;
  /** The answer, recorded as the app records it: made once, so a read from memory adds no closure. */
  const answer = (
    counters: ComposedCounters,
    requestId: string,
    userId: string,
    started: number,
  ) => {
    const res = new Response(countersJson(counters.user, counters.group), {
      headers: { "Content-Type": "application/json", [HEADERS.requestId]: requestId },
    });
    recordRequest({
      requestId,
      method: "GET",
      path: ROUTE,
      route: ROUTE,
      status: 200,
      started,
      userId,
    });
    return res;
  };
  return (req) => {
    if (req.method !== "GET" || pathOf(req.url) !== ROUTE) return undefined;
    const headers = req.headers;
    if (headers.has("origin")) return undefined;
    const authorization = headers.get("authorization");
    const token = authorization === null ? undefined : bearerToken(authorization);
    const userId = token === undefined ? undefined : tokens.userIdOf(token);
    if (userId === undefined) return undefined;
    const started = performance.now();
    const requestId = requestIdFor(headers.get(HEADERS.requestId));
    const held = reader.cached(userId);
    if (held) return answer(held, requestId, userId, started);
    // A failed read is left to the app, which reads again and answers the error (503, 500).
    return reader.read(userId).then(
      (counters) => answer(counters, requestId, userId, started),
      () => undefined,
    );
  };
}
