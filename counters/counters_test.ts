import assert from "node:assert/strict";
import { countersBody, countersJson, unreadFor } from "./counters.ts";

Deno.test("countersBody() sums the total and leaves out peers at zero", () => {
  assert.deepEqual(countersBody({ version: 3, dialogs: { a: 2, b: 0, c: 1 } }), {
    total: 3,
    dialogs: { a: 2, c: 1 },
  });
  assert.deepEqual(countersBody({ version: 0, dialogs: {} }), { total: 0, dialogs: {} });
});

Deno.test("unreadFor() answers 0 for an unknown peer and ignores case", () => {
  const counters = { version: 1, dialogs: { "ab-cd": 4 } };
  assert.equal(unreadFor(counters, "AB-CD"), 4);
  assert.equal(unreadFor(counters, "zz"), 0);
});

Deno.test("countersJson() is countersBody() as JSON, the same string for the same counters", () => {
  const counters = { version: 4, dialogs: { a: 2, b: 0 } };
  assert.equal(countersJson(counters), '{"total":2,"dialogs":{"a":2}}');
  assert.equal(countersJson(counters), countersJson(counters));
  assert.equal(countersJson({ version: 5, dialogs: { a: 3 } }), '{"total":3,"dialogs":{"a":3}}');
});
