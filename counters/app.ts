/**
 * The counters HTTP API: the caller's unread counters (dialogs and groups), from the cache with
 * Postgres behind it, and a live stream.
 */
import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { cors } from "hono/cors";
import { streamSSE } from "hono/streaming";
import { bearerAuth, type VerifiedTokens } from "../shared/auth.ts";
import type { AppEnv } from "../shared/http/app_env.ts";
import { notFound } from "../shared/errors.ts";
import { COMMON_PROBLEMS, problemDoc } from "../shared/openapi.ts";
import type { CoherentCounters } from "./coherence.ts";
import { countersBody, groupCount, unreadFor } from "./counters.ts";
import { followCounters } from "./live_stream.ts";

/** What the counters routes need. */
export interface CountersRoutesDeps {
  /** The tokens this service has verified, shared with its fast read path. */
  tokens: VerifiedTokens;
  reader: CoherentCounters;
  heartbeatMs: number;
  /** Origins whose pages may call this API from a browser. */
  corsOrigins: string[];
  /** Aborted when the service shuts down, so open streams end. */
  shutdown: AbortSignal;
}

const GroupCount = z.object({
  unread: z.number().int(),
  mentions: z.number().int(),
}).openapi("GroupCount");

const CountersBody = z.object({
  total: z.number().int().openapi({
    description: "The unread of every dialog and group that is not muted",
    example: 5,
  }),
  dialogs: z.record(z.string(), z.number().int()).openapi({
    description: "Unread per peer; peers at 0 are left out",
    example: { "4b2a61f0-8d0e-4c1e-9f3a-2a5c7d9e1b00": 3 },
  }),
  groups: z.record(z.string(), GroupCount).openapi({
    description: "Unread and mentions per group; groups at 0 are left out",
    example: { "9c1e2f30-5a4b-4d6c-8e7f-0a1b2c3d4e5f": { unread: 2, mentions: 1 } },
  }),
  mentions: z.number().int().openapi({
    description: "The mentions of every group",
    example: 1,
  }),
  muted: z.array(z.string()).openapi({
    description: "Peers and groups the caller muted",
    example: ["4b2a61f0-8d0e-4c1e-9f3a-2a5c7d9e1b00"],
  }),
}).openapi("Counters");
/** The caller's unread counters as the API returns them. */
export type CountersView = z.infer<typeof CountersBody>;

const PeerCounter = z.object({
  peerId: z.uuid(),
  unread: z.number().int(),
}).openapi("PeerCounter");

const GroupCounter = z.object({
  groupId: z.uuid(),
  unread: z.number().int(),
  mentions: z.number().int(),
  muted: z.boolean(),
}).openapi("GroupCounter");

const getCounters = createRoute({
  method: "get",
  path: "/api/counters",
  summary: "The caller's unread counters: the total, per peer, per group, mentions and mutes",
  security: [{ bearer: [] }],
  responses: {
    200: { description: "Counters", content: { "application/json": { schema: CountersBody } } },
    401: COMMON_PROBLEMS[401],
  },
});

const streamCounters = createRoute({
  method: "get",
  path: "/api/counters/stream",
  summary: "Server-sent events: `counters` (id = version, data as GET /api/counters) on open and " +
    "after every change; a comment line as heartbeat at least every 15 s; it ends when the token " +
    "that opened it expires",
  security: [{ bearer: [] }],
  request: {
    query: z.object({
      access_token: z.string().optional().openapi({
        param: { name: "access_token", in: "query" },
        description: "The JWT, for EventSource which cannot set headers",
      }),
    }),
  },
  responses: {
    200: {
      description: "An event stream",
      content: { "text/event-stream": { schema: z.string() } },
    },
    401: COMMON_PROBLEMS[401],
  },
});

const getGroupCounter = createRoute({
  method: "get",
  path: "/api/counters/groups/{groupId}",
  summary: "The caller's unread and mention counts for one of its groups",
  security: [{ bearer: [] }],
  request: {
    params: z.object({ groupId: z.uuid().openapi({ param: { name: "groupId", in: "path" } }) }),
  },
  responses: {
    200: { description: "Counter", content: { "application/json": { schema: GroupCounter } } },
    ...COMMON_PROBLEMS,
    404: problemDoc("The caller is not a member of this group"),
  },
});

const getPeerCounter = createRoute({
  method: "get",
  path: "/api/counters/{peerId}",
  summary: "The caller's unread count for one peer",
  security: [{ bearer: [] }],
  request: {
    params: z.object({ peerId: z.uuid().openapi({ param: { name: "peerId", in: "path" } }) }),
  },
  responses: {
    200: { description: "Counter", content: { "application/json": { schema: PeerCounter } } },
    ...COMMON_PROBLEMS,
  },
});

/** Mounts the counters routes on `app`; returns how many live streams are open, for metrics. */
export function mountCountersRoutes(
  app: OpenAPIHono<AppEnv>,
  deps: CountersRoutesDeps,
): { openStreams: () => number } {
  const { reader } = deps;
  let openStreams = 0;
  // The web page on dialogs' origin reads counters and the stream from the browser.
  const corsHeaders = cors({
    origin: deps.corsOrigins,
    allowHeaders: ["Authorization"],
    maxAge: 600,
  });
  // Only browsers send Origin; the rest of the heavy read traffic skips the CORS work (~30%).
  app.use("/api/*", (c, next) => c.req.header("Origin") ? corsHeaders(c, next) : next());
  app.use(
    "/api/*",
    bearerAuth({ tokens: deps.tokens, queryTokenPaths: ["/api/counters/stream"] }),
  );
  app.openapi(getCounters, async (c) => {
    const counters = await reader.read(c.get("userId"));
    return c.json(countersBody(counters.user, counters.group), 200);
  });

  // Registered before /{peerId} so "stream" is not taken for a peer id.
  app.openapi(streamCounters, (c) => {
    const userId = c.get("userId");
    const expiresAt = c.get("tokenExpiresAt");
    // Hono answers HEAD by running GET and discarding the body, which would leave a stream open.
    if (c.req.method === "HEAD") {
      return c.body(null, 200, { "Content-Type": "text/event-stream" });
    }
    return streamSSE(c, async (stream) => {
      // The follow hands over one event at a time, each with a higher composed version.
      const follow = followCounters(reader, userId, async ({ version, json }) => {
        if (stream.aborted) return;
        await stream.writeSSE({ event: "counters", id: String(version), data: json });
      });
      openStreams++;
      let expired = false;
      const expiry = new AbortController();
      let endShutdown = () => {};
      const ended = new Promise<void>((resolve) => {
        stream.onAbort(resolve);
        endShutdown = resolve;
        deps.shutdown.addEventListener("abort", endShutdown, { once: true });
        // A group state that cannot be read ends the stream; the client opens a new one.
        follow.failed.catch(() => resolve());
        // The token opened the stream; it carries no more than the token's life.
        if (expiresAt !== undefined) {
          afterTime(expiresAt, expiry.signal, () => {
            expired = true;
            resolve();
          });
        }
      });
      try {
        await follow.started;
        while (!stream.aborted && !deps.shutdown.aborted) {
          let timer: ReturnType<typeof setTimeout> | undefined;
          const tick = new Promise<"tick">((r) =>
            timer = setTimeout(() => r("tick"), deps.heartbeatMs)
          );
          const next = await Promise.race([tick, ended]);
          clearTimeout(timer);
          if (next !== "tick") break;
          await stream.write(": heartbeat\n\n");
        }
        if (expired && !stream.aborted) await stream.write(": token expired\n\n");
      } finally {
        // The shared shutdown signal outlives every stream: each removes its own listener.
        deps.shutdown.removeEventListener("abort", endShutdown);
        expiry.abort();
        follow.stop();
        openStreams--;
      }
    });
  });

  // Registered before /{peerId} so "groups" is not taken for a peer id.
  app.openapi(getGroupCounter, async (c) => {
    const groupId = c.req.valid("param").groupId.toLowerCase();
    const counters = await reader.read(c.get("userId"));
    const member = counters.user.groups?.[groupId];
    if (member === undefined) throw notFound("You are not a member of this group");
    const { unread, mentions } = groupCount(member, counters.group(groupId));
    return c.json({ groupId, unread, mentions, muted: member.muted }, 200);
  });

  app.openapi(getPeerCounter, async (c) => {
    const peerId = c.req.valid("param").peerId.toLowerCase();
    const counters = await reader.read(c.get("userId"));
    return c.json({ peerId, unread: unreadFor(counters.user, peerId) }, 200);
  });
  return { openStreams: () => openStreams };
}

/** Longest delay a timer takes (about 24.8 days); a longer one would fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Calls `fn` once the clock reaches `at` (ms since the epoch), unless `signal` aborts first. */
function afterTime(at: number, signal: AbortSignal, fn: () => void): void {
  const wait = at - Date.now();
  if (wait <= 0) return fn();
  const timer = setTimeout(
    () => wait > MAX_TIMER_MS ? afterTime(at, signal, fn) : fn(),
    Math.min(wait, MAX_TIMER_MS),
  );
  signal.addEventListener("abort", () => clearTimeout(timer), { once: true });
}
