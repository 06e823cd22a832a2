import assert from "node:assert/strict";
import {
  type CallFrame,
  type CpuProfile,
  parseProcStat,
  processTable,
  profileStages,
  repoStage,
  type SendRunCpu,
  splitByStage,
  stageOf,
  stageTable,
  threadKind,
} from "./cpu_stages.ts";

const ROOT = "file:///repo/";
const repo = (path: string, functionName = "f"): CallFrame => ({
  functionName,
  url: `${ROOT}${path}`,
});
const lib = (url: string, functionName = "g"): CallFrame => ({ functionName, url });
const PG = "file:///cache/npm/registry.npmjs.org/postgres/3.4.9/src/connection.js";
const NATS = "file:///cache/npm/registry.npmjs.org/@nats-io/nats-core/3.4.0/lib/protocol.js";

Deno.test("stageOf() gives a sample the stage of its innermost frame of the repo's code", () => {
  // postgres.js building a query for dialogs' send transaction, called from the route.
  const send = [lib(PG, "build"), repo("dialogs/message_store.ts", "sendMessage")];
  assert.equal(stageOf([...send, repo("dialogs/app.ts")], ROOT), "send transaction");
  assert.equal(
    stageOf([repo("shared/http/base_app.ts"), lib("ext:deno_http/00_serve.ts")], ROOT),
    "HTTP, Hono, auth, validation",
  );
  assert.equal(
    stageOf([repo("dialogs/message_store.ts", "applyCountedReplies")], ROOT),
    "reply apply",
  );
  assert.equal(stageOf([repo("counters/send_batch.ts")], ROOT), "counting transaction");
  assert.equal(
    stageOf([repo("counters/counter_store.ts", "loadUsers")], ROOT),
    "live updates, cache (incl. Redis client)",
  );
  assert.equal(stageOf([repo("shared/log.ts")], ROOT), "logging, metrics");
  // (e)'s one process: its transaction, and the rest of its handler.
  const single = (fn: string) => repo("bench/single_send_server.ts", fn);
  assert.equal(
    stageOf([lib(PG), single("statements"), repo("shared/db.ts"), single("")], ROOT),
    "send transaction",
  );
  assert.equal(
    stageOf([single(""), lib("file:///x/hono/4.13.19/dist/hono.js")], ROOT),
    "HTTP, Hono, auth, validation",
  );
});

Deno.test("stageOf() lets shared helpers' callers decide, and the relay's outbox code be the relay", () => {
  // pipelinedTransaction and enqueueEvent belong to whoever runs the transaction.
  const inSend = [
    repo("shared/db.ts", "pipelinedTransaction"),
    repo("shared/outbox.ts", "enqueueEvent"),
    repo("dialogs/message_store.ts", "sendMessage"),
  ];
  assert.equal(stageOf(inSend, ROOT), "send transaction");
  const inCounting = [repo("shared/outbox.ts", "enqueueEvents"), repo("counters/send_batch.ts")];
  assert.equal(stageOf(inCounting, ROOT), "counting transaction");
  assert.equal(stageOf([repo("shared/outbox.ts", "claim")], ROOT), "outbox relay (publish)");
  assert.equal(
    stageOf([repo("shared/group_commit.ts")], ROOT),
    "other JS (timers, node compat, project code elsewhere)",
  );
});

Deno.test("stageOf() falls back on the innermost library it knows, then on other", () => {
  assert.equal(
    stageOf([lib("ext:deno_node/internal/buffer.mjs"), lib(PG, "data")], ROOT),
    "postgres.js, no caller on the stack (socket writes, answers parsed)",
  );
  assert.equal(
    stageOf([lib(NATS)], ROOT),
    "NATS client, no caller on the stack (socket, protocol)",
  );
  assert.equal(stageOf([lib("", "(garbage collector)")], ROOT), "GC (on the main thread)");
  assert.equal(
    stageOf([lib("", "(program)")], ROOT),
    "Deno runtime, native ((program): I/O, HTTP, ops)",
  );
  assert.equal(stageOf([lib("", "(idle)")], ROOT), "idle");
  assert.equal(
    stageOf([lib("ext:core/01_core.js"), lib("", "(root)")], ROOT),
    "other JS (timers, node compat, project code elsewhere)",
  );
  // A file outside the repo's service code is not the repo's.
  assert.equal(repoStage("testing/fixtures.ts", "f"), undefined);
});

Deno.test("profileStages() sums each sample's time to the next within the window only", () => {
  const profile: CpuProfile = {
    nodes: [
      { id: 1, callFrame: lib("", "(root)"), children: [2, 3, 4] },
      { id: 2, callFrame: lib("", "(idle)") },
      { id: 3, callFrame: repo("dialogs/app.ts"), children: [5] },
      { id: 4, callFrame: lib("", "(garbage collector)") },
      { id: 5, callFrame: lib(PG, "build") },
    ],
    startTime: 1_000,
    endTime: 2_000,
    // At 1100 (idle), 1200 (HTTP, via the route), 1400 (GC), 1500 (idle), 1600 (HTTP).
    samples: [2, 5, 4, 2, 3],
    timeDeltas: [100, 100, 200, 100, 100],
  };
  const all = profileStages(profile, { fromUs: 0, toUs: 10_000 }, ROOT);
  assert.deepEqual(
    [...all.stages],
    [["HTTP, Hono, auth, validation", 200], ["GC (on the main thread)", 100]],
  );
  assert.equal(all.idleUs, 200);
  assert.deepEqual([...all.leaves], [
    ["HTTP, Hono, auth, validation: build (connection.js)", 200],
    ["GC (on the main thread): (garbage collector) (native)", 100],
  ]);
  // Cut at 1300: half the first HTTP sample, nothing after.
  const cut = profileStages(profile, { fromUs: 1_000, toUs: 1_300 }, ROOT);
  assert.deepEqual([...cut.stages], [["HTTP, Hono, auth, validation", 100]]);
  assert.equal(cut.idleUs, 100);
});

Deno.test("parseProcStat() reads user+system and children's ticks, whatever the command name", () => {
  const fields = Array.from({ length: 50 }, (_, i) => String(i + 3));
  // Fields 14–17 (1-based): utime 14, stime 15, cutime 16, cstime 17.
  const line = `4242 (V8 Default Work) ${fields.join(" ")}`;
  assert.deepEqual(parseProcStat(line), { ticks: 14 + 15, childTicks: 16 + 17 });
});

Deno.test("threadKind() groups a process's threads by name without their number", () => {
  assert.equal(threadKind("tokio-runtime-w"), "tokio workers");
  assert.equal(threadKind("V8 DefaultWorke"), "V8 workers (concurrent GC, compiler)");
  assert.equal(threadKind("worker-3"), "worker");
  assert.equal(threadKind(""), "unnamed");
});

Deno.test("splitByStage() splits the main thread's CPU in the samples' proportions", () => {
  const split = splitByStage(new Map([["send transaction", 300], ["logging, metrics", 100]]), 80);
  assert.deepEqual([...split], [["send transaction", 60], ["logging, metrics", 20]]);
  assert.deepEqual([...splitByStage(new Map(), 80)], []);
});

Deno.test("the tables show µs per send by process and by stage, with their totals", () => {
  const d: SendRunCpu = {
    sends: 1_000,
    seconds: 5,
    perSend: { dialogs: 900, counters: 500, wrk: 100 },
    stages: {
      dialogs: {
        stages: new Map([["send transaction", 400]]),
        offMainThread: new Map([["tokio workers", 100], ["deno", 0.2]]),
      },
      counters: { stages: new Map([["counting transaction", 300]]), offMainThread: new Map() },
    },
  };
  const e: SendRunCpu = { sends: 4_000, seconds: 5, perSend: { single: 300, wrk: 50 }, stages: {} };
  const processes = processTable(d, e);
  assert.match(processes, /\| dialogs \| 900 \| {2}\|/);
  assert.match(processes, /\| single \| {2}\| 300 \|/);
  assert.match(processes, /\| \*\*all processes\*\* \| \*\*1500\*\* \| \*\*350\*\* \|/);
  assert.match(processes, /\| 1000 \(200\/s\) \| 4000 \(800\/s\) \|/);
  const stages = stageTable(d);
  assert.match(stages, /\| stage \(µs CPU\/send\) \| dialogs \| counters \|/);
  assert.match(stages, /\| send transaction \| 400 \| 0 \|/);
  assert.match(stages, /\| counting transaction \| 0 \| 300 \|/);
  assert.match(stages, /\| off the main thread: tokio workers \| 100 \| 0 \|/);
  assert.doesNotMatch(stages, /off the main thread: deno/);
  assert.match(stages, /\| \*\*whole process\*\* \| \*\*900\*\* \| \*\*500\*\* \|/);
});
