/**
 * `/openapi.json` and a `/docs` page rendering it with Swagger UI, whose script and stylesheet
 * the service serves itself from the npm package (no CDN: the page works offline).
 */
import type { OpenAPIHono } from "@hono/zod-openapi";
import swaggerUiPath from "swagger-ui-dist/absolute-path.js";
import type { AppEnv } from "./app_env.ts";

/** The Swagger UI files /docs loads, by the name it loads them under. */
const ASSETS: Record<string, string> = {
  "swagger-ui.css": "text/css; charset=utf-8",
  "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
};

/** Mounts `/openapi.json`, a `/docs` page rendering it and the page's assets under `/docs/`. */
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
  const assetDir: string = swaggerUiPath();
  app.get("/docs/:asset", async (c) => {
    const name = c.req.param("asset");
    const type = ASSETS[name];
    if (!type) return c.notFound();
    // Read when asked for (1.5 MB, seldom): nothing is held in the service's memory.
    const file = await Deno.open(`${assetDir}/${name}`);
    return c.body(file.readable, 200, {
      "Content-Type": type,
      "Cache-Control": "public, max-age=86400",
    });
  });
  app.get("/docs", (c) =>
    c.html(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/docs/swagger-ui.css"></head>
<body><div id="ui"><p>Loading the API description from <a href="/openapi.json">/openapi.json</a>…</p></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script>window.onload = () => SwaggerUIBundle({ url: "/openapi.json", dom_id: "#ui" });</script>
</body></html>`));
}
