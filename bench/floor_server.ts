/**
 * The floor of (b): the response of `GET /api/counters` (the counters as JSON, with `Content-Type`
 * and the contract's `X-Request-ID`) for the caller of a bearer token, from a bare `Deno.serve`
 * handler. Each token is verified once and each user's counters are made up and kept in a Map: no
 * Hono, no Redis, no Postgres, no metrics. What (b) costs beyond (a) that no counters code can
 * remove shows here: reading the request's headers and writing a JSON body with two headers.
 */
import { bearerToken, createVerifiedTokens } from "../shared/auth.ts";
import { HEADERS } from "../shared/events.ts";
import { requestIdFor } from "../shared/http/request_id.ts";
import { countersJson, type UserCounters } from "../counters/counters.ts";
import { pathOf } from "../counters/fast_read.ts";

const port = Number(Deno.env.get("PORT") ?? 8092);
const tokens = createVerifiedTokens(Deno.env.get("JWT_SECRET") ?? "");
const peers = Array.from({ length: 5 }, () => crypto.randomUUID());
const held = new Map<string, UserCounters>();

Deno.serve({ port, hostname: "127.0.0.1", onListen: () => {} }, async (req) => {
  const token = bearerToken(req.headers.get("authorization") ?? "");
  if (req.method !== "GET" || pathOf(req.url) !== "/api/counters" || !token) {
    return new Response(null, { status: 404 });
  }
  const userId = tokens.userIdOf(token) ?? await tokens.verify(token);
  let counters = held.get(userId);
  if (!counters) {
    counters = { version: 1, dialogs: Object.fromEntries(peers.map((p, i) => [p, 1 + i])) };
    held.set(userId, counters);
  }
  return new Response(countersJson(counters), {
    headers: {
      "Content-Type": "application/json",
      [HEADERS.requestId]: requestIdFor(req.headers.get(HEADERS.requestId)),
    },
  });
});
