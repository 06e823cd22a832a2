/** `/openapi.json` and a `/docs` page rendering it. */
import type { OpenAPIHono } from "@hono/zod-openapi";
import type { AppEnv } from "./app_env.ts";

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
