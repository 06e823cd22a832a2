/** The web page dialogs serves at `/`, its configuration, and the development login. */
import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { signToken } from "../shared/auth.ts";
import { notFound } from "../shared/errors.ts";
import type { AppEnv } from "../shared/http/app_env.ts";
import { problemDoc } from "../shared/openapi.ts";

/** What the page needs. */
export interface WebDeps {
  jwtSecret: string;
  /** When true, `POST /dev/login` issues a token for any user id. Development only. */
  devLogin: boolean;
  /** Where the browser reaches counters (its origin must be in counters' CORS_ORIGINS). */
  countersUrl: string;
}

const webDir = new URL("./web/", import.meta.url);

const devLoginRoute = createRoute({
  method: "post",
  path: "/dev/login",
  summary: "Development only (DEV_LOGIN=true): a token for any user id",
  request: {
    body: {
      required: true,
      content: { "application/json": { schema: z.object({ userId: z.uuid() }) } },
    },
  },
  responses: {
    200: {
      description: "A token valid for a day",
      content: { "application/json": { schema: z.object({ token: z.string() }) } },
    },
    400: problemDoc("Invalid input"),
    404: problemDoc("DEV_LOGIN is off"),
  },
});

/** Mounts `/`, `/app.js`, `/config.json` and `/dev/login`; the files are read once, here. */
export async function mountWebApp(app: OpenAPIHono<AppEnv>, deps: WebDeps): Promise<void> {
  const html = await Deno.readTextFile(new URL("index.html", webDir));
  const script = await Deno.readTextFile(new URL("app.js", webDir));
  app.get("/", (c) => c.html(html));
  app.get("/app.js", (c) =>
    c.body(script, 200, {
      "Content-Type": "text/javascript; charset=utf-8",
      "Cache-Control": "no-cache",
    }));
  app.get(
    "/config.json",
    (c) => c.json({ countersUrl: deps.countersUrl.replace(/\/$/, ""), devLogin: deps.devLogin }),
  );
  app.openapi(devLoginRoute, async (c) => {
    if (!deps.devLogin) throw notFound("the development login is off (DEV_LOGIN)");
    const { userId } = c.req.valid("json");
    return c.json({ token: await signToken(userId.toLowerCase(), deps.jwtSecret) }, 200);
  });
}
