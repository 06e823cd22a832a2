import assert from "node:assert/strict";
import { retry } from "./retry.ts";

Deno.test("retry() resolves once the step succeeds", async () => {
  let calls = 0;
  const seen: number[] = [];
  const result = await retry(() => {
    calls++;
    return calls < 3 ? Promise.reject(new Error("not yet")) : Promise.resolve("done");
  }, { timeoutMs: 1_000, minDelayMs: 1, onRetry: (_e, attempt) => seen.push(attempt) });
  assert.equal(result, "done");
  assert.deepEqual(seen, [1, 2]);
});

Deno.test("retry() rethrows the last error after the timeout", async () => {
  await assert.rejects(
    retry(() => Promise.reject(new Error("still down")), { timeoutMs: 30, minDelayMs: 5 }),
    /still down/,
  );
});

Deno.test("retry() rethrows at once an error retryIf refuses", async () => {
  let calls = 0;
  await assert.rejects(
    retry(() => {
      calls++;
      return Promise.reject(new TypeError("will never work"));
    }, { timeoutMs: 10_000, minDelayMs: 1, retryIf: (err) => !(err instanceof TypeError) }),
    /will never work/,
  );
  assert.equal(calls, 1);
});
