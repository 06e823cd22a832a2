import assert from "node:assert/strict";
import { importedSpecifiers, unpinnedPackages, usedImports } from "./image_deps.ts";

Deno.test("importedSpecifiers() finds static imports, re-exports, side-effect and dynamic imports", () => {
  const source = `import { z } from "zod";
import type { Context } from 'hono';
export { thing } from "./thing.ts";
import "./side_effect.ts";
const lazy = await import("postgres");
const text = "from nowhere";`;
  assert.deepEqual(importedSpecifiers(source).sort(), [
    "./side_effect.ts",
    "./thing.ts",
    "hono",
    "postgres",
    "zod",
  ]);
});

Deno.test("usedImports() keeps the keys a specifier names, a key ending in / as a prefix", () => {
  const imports = {
    hono: "npm:hono@4",
    "hono/": "npm:/hono@4/",
    zod: "npm:zod@4",
    testcontainers: "npm:testcontainers@12",
  };
  assert.deepEqual(usedImports(imports, ["hono/body-limit", "zod", "./local.ts"]), {
    "hono/": "npm:/hono@4/",
    zod: "npm:zod@4",
  });
});

Deno.test("unpinnedPackages() names packages the first lock lacks or pins with another integrity", () => {
  const before = { npm: { "a@1.0.0": { integrity: "sha-a" }, "b@1.0.0": { integrity: "sha-b" } } };
  const after = {
    npm: {
      "a@1.0.0": { integrity: "sha-a" },
      "b@1.0.0": { integrity: "sha-other" },
      "c@1.0.0": { integrity: "sha-c" },
    },
  };
  assert.deepEqual(unpinnedPackages(before, after), ["b@1.0.0", "c@1.0.0"]);
  assert.deepEqual(unpinnedPackages(before, { npm: { "a@1.0.0": { integrity: "sha-a" } } }), []);
});
