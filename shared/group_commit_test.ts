import assert from "node:assert/strict";
import { groupCommit, groupCommitIsolated } from "./group_commit.ts";

/** A promise with its resolve function outside. */
function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => resolve = r);
  return { promise, resolve };
}

Deno.test("groupCommit() applies a lone item at once, in a batch of one", async () => {
  const batches: number[][] = [];
  const add = groupCommit(async (items: number[]) => {
    batches.push(items);
    return await Promise.resolve(items.map((n) => n * 2));
  });
  assert.equal(await add(21), 42);
  assert.deepEqual(batches, [[21]]);
});

Deno.test("groupCommit() gathers items arriving during a batch into the next one", async () => {
  const batches: number[][] = [];
  const gate = deferred();
  const add = groupCommit(async (items: number[]) => {
    batches.push(items);
    if (batches.length === 1) await gate.promise;
    return items.map((n) => -n);
  });
  const first = add(1);
  const later = [add(2), add(3), add(4)];
  gate.resolve();
  assert.deepEqual(await Promise.all([first, ...later]), [-1, -2, -3, -4]);
  assert.deepEqual(batches, [[1], [2, 3, 4]]);
});

Deno.test("groupCommit() splits what is waiting into batches of at most maxBatch", async () => {
  const batches: number[][] = [];
  const gate = deferred();
  const add = groupCommit(async (items: number[]) => {
    batches.push(items);
    if (batches.length === 1) await gate.promise;
    return items;
  }, 2);
  const all = [add(1), add(2), add(3), add(4), add(5)];
  gate.resolve();
  await Promise.all(all);
  assert.deepEqual(batches, [[1], [2, 3], [4, 5]]);
});

Deno.test("groupCommit() rejects every item of a failed batch and goes on with the next", async () => {
  const gate = deferred();
  let calls = 0;
  const add = groupCommit(async (items: string[]) => {
    calls++;
    if (calls === 1) {
      await gate.promise;
      throw new Error("database gone");
    }
    return items.map((s) => s.toUpperCase());
  });
  const failing = add("a");
  const next = [add("b"), add("c")];
  gate.resolve();
  await assert.rejects(failing, /database gone/);
  assert.deepEqual(await Promise.all(next), ["B", "C"]);
});

Deno.test("groupCommit() rejects a batch whose results do not match its items", async () => {
  const add = groupCommit(async (_items: number[]) => await Promise.resolve([] as number[]));
  await assert.rejects(add(1), /a batch of 1 gave 0 results/);
});

Deno.test("groupCommitIsolated() applies a failed batch's items one by one, failing only the bad one", async () => {
  const batches: string[][] = [];
  const gate = deferred();
  const add = groupCommitIsolated(async (items: string[]) => {
    batches.push(items);
    if (batches.length === 1) await gate.promise;
    if (items.includes("bad")) throw new Error(`refused ${items.join(",")}`);
    return items.map((s) => s.toUpperCase());
  });
  const first = add("first");
  const outcomes = Promise.allSettled([add("a"), add("bad"), add("b")]);
  gate.resolve();
  assert.equal(await first, "FIRST");
  const [a, bad, b] = await outcomes;
  assert.deepEqual(a, { status: "fulfilled", value: "A" });
  assert.equal(bad?.status, "rejected");
  assert.match(String((bad as PromiseRejectedResult).reason), /^Error: refused bad$/);
  assert.deepEqual(b, { status: "fulfilled", value: "B" });
  assert.deepEqual(batches, [["first"], ["a", "bad", "b"], ["a"], ["bad"], ["b"]]);
});

Deno.test("groupCommitIsolated() fails every item of a batch whose error is not retryable", async () => {
  const batches: string[][] = [];
  const gate = deferred();
  const add = groupCommitIsolated(async (items: string[]) => {
    batches.push(items);
    if (batches.length === 1) await gate.promise;
    if (items.length > 1) throw new Error("connection lost");
    return items;
  }, { retryable: (err) => !/connection lost/.test(String(err)) });
  const first = add("first");
  const later = [add("a"), add("b")];
  gate.resolve();
  assert.equal(await first, "first");
  for (const p of later) await assert.rejects(p, /connection lost/);
  assert.deepEqual(batches, [["first"], ["a", "b"]]);
});

Deno.test("groupCommitIsolated() rejects a lone item with its own error, applied once", async () => {
  let calls = 0;
  const add = groupCommitIsolated(async (_items: string[]): Promise<string[]> => {
    calls++;
    return await Promise.reject(new Error("no"));
  });
  await assert.rejects(add("x"), /no/);
  assert.equal(calls, 1);
});
