import assert from "node:assert/strict";
import { createBaseApp } from "./base_app.ts";
import { mountApiDocs } from "./api_docs.ts";
import { createLogger } from "../log.ts";
import { createMetrics } from "../metrics.ts";

function docsApp() {
  const app = createBaseApp({
    service: "test",
    log: createLogger("test", "error", () => {}),
    metrics: createMetrics(),
  });
  mountApiDocs(app, "test API");
  return app;
}

Deno.test("/docs loads nothing from another host: its script and stylesheet come from the service", async () => {
  const app = docsApp();
  const page = await (await app.request("/docs")).text();
  const loaded = [...page.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]!);
  assert.ok(loaded.length >= 3, page);
  for (const url of loaded) assert.ok(url.startsWith("/"), `${url} is not served by the service`);
  for (const url of loaded.filter((u) => u.startsWith("/docs/"))) {
    const res = await app.request(url);
    assert.equal(res.status, 200, url);
    const body = await res.text();
    assert.ok(body.length > 10_000, `${url} is only ${body.length} bytes`);
  }
  const script = await app.request("/docs/swagger-ui-bundle.js");
  assert.match(script.headers.get("Content-Type") ?? "", /javascript/);
  assert.match(await script.text(), /SwaggerUIBundle/);
});

Deno.test("/docs/ serves only the page's own assets", async () => {
  const app = docsApp();
  for (const path of ["/docs/package.json", "/docs/..%2Fdeno.json", "/docs/index.html"]) {
    const res = await app.request(path);
    assert.equal(res.status, 404, path);
    await res.body?.cancel();
  }
});
