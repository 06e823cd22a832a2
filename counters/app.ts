/** The counters HTTP API: the caller's unread counters, from the cache with Postgres behind it. */
import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { bearerAuth } from "../shared/auth.ts";
import type { AppEnv } from "../shared/http.ts";
import { ProblemSchema } from "../shared/openapi.ts";
import type { CounterReader } from "./counter_reads.ts";
import { countersBody, unreadFor } from "./counters.ts";

/** What the counters routes need. */
export interface CountersRoutesDeps {
  jwtSecret: string;
  reader: CounterReader;
}

const CountersBody = z.object({
  total: z.number().int().openapi({ example: 3 }),
  dialogs: z.record(z.string(), z.number().int()).openapi({
    example: { "4b2a61f0-8d0e-4c1e-9f3a-2a5c7d9e1b00": 3 },
  }),
}).openapi("Counters");

const PeerCounter = z.object({
  peerId: z.uuid(),
  unread: z.number().int(),
}).openapi("PeerCounter");

const errors = {
  400: {
    description: "Invalid input",
    content: { "application/problem+json": { schema: ProblemSchema } },
  },
  401: {
    description: "Missing or invalid token",
    content: { "application/problem+json": { schema: ProblemSchema } },
  },
};

const getCounters = createRoute({
  method: "get",
  path: "/api/counters",
  summary: "The caller's unread counters: the total and one count per peer",
  security: [{ bearer: [] }],
  responses: {
    200: { description: "Counters", content: { "application/json": { schema: CountersBody } } },
    401: errors[401],
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
    ...errors,
  },
});

/** Mounts the counters routes on `app`. */
export function mountCountersRoutes(app: OpenAPIHono<AppEnv>, deps: CountersRoutesDeps): void {
  app.use("/api/*", bearerAuth({ secret: deps.jwtSecret }));
  app.openapi(getCounters, async (c) => {
    const counters = await deps.reader.read(c.get("userId"));
    return c.json(countersBody(counters), 200);
  });
  app.openapi(getPeerCounter, async (c) => {
    const peerId = c.req.valid("param").peerId.toLowerCase();
    const counters = await deps.reader.read(c.get("userId"));
    return c.json({ peerId, unread: unreadFor(counters, peerId) }, 200);
  });
}
