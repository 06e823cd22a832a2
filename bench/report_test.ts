import assert from "node:assert/strict";
import { type BenchFigures, figuresTable, targets, targetsTable } from "./report.ts";
import { parseWrk } from "./wrk.ts";

const WRK_OUTPUT = `Running 10s test @ http://127.0.0.1:8082/api/counters
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.31ms    1.02ms  40.12ms   91.20%
    Req/Sec    13.90k     1.10k   16.02k    70.00%
  Latency Distribution
     50%  812.00us
     75%    2.52ms
     90%    3.40ms
     99%    1.20s
  276512 requests in 10.01s, 80.12MB read
  Non-2xx or 3xx responses: 3
  Socket errors: connect 0, read 2, write 0, timeout 1
Requests/sec:  27624.38
Transfer/sec:      8.00MB
`;

Deno.test("parseWrk() reads requests/s, p50 and p99 in ms, and counts every error", () => {
  assert.deepEqual(parseWrk(WRK_OUTPUT), {
    requestsPerSecond: 27624.38,
    p50Ms: 0.812,
    p99Ms: 1200,
    errors: 6,
  });
});

Deno.test("parseWrk() refuses output without a rate", () => {
  assert.throws(() => parseWrk("wrk: connection refused"), /no Requests\/sec/);
});

const run = (requestsPerSecond: number, p99Ms = 5) => ({
  requestsPerSecond,
  p50Ms: 1,
  p99Ms,
  errors: 0,
});

function figures(overrides: Partial<BenchFigures> = {}): BenchFigures {
  return {
    machine: "test",
    connections: 64,
    seconds: 10,
    hello: run(40_000),
    helloWithTokens: run(35_000),
    floor: run(24_000),
    countersLight: run(30_000),
    countersHeavy: run(29_000),
    naiveLight: run(3_000),
    naiveHeavy: run(100),
    pgbenchTps: 3_000,
    sagaPerSecond: 1_500,
    sendAcceptPerSecond: 1_600,
    halfLoad: { rate: 750, p50Ms: 40, p99Ms: 120, failed: 0 },
    rssMb: { counters: 120, dialogs: 110 },
    ...overrides,
  };
}

Deno.test("targets() are all met by figures that meet them, and each can be missed", () => {
  assert.deepEqual(targets(figures()).filter((t) => !t.met), []);
  const missed = (f: BenchFigures) => targets(f).filter((t) => !t.met).map((t) => t.what);
  assert.deepEqual(missed(figures({ countersLight: run(29_000, 12) })), [
    "(b) ≥ 0.75 × (a) requests/s at 64 connections",
    "(b) p99 ≤ 10 ms at 64 connections",
  ]);
  assert.deepEqual(missed(figures({ countersHeavy: run(20_000) })), [
    "(b) flat as unread grows (heavy ≥ 0.9 × light)",
  ]);
  assert.deepEqual(missed(figures({ sagaPerSecond: 1_000 })), [
    "(d) ≥ 0.5 × the Postgres ceiling",
  ]);
  assert.deepEqual(
    missed(figures({ halfLoad: { rate: 750, p50Ms: 40, p99Ms: 120, failed: 1 } })),
    ["(d) p99 send→committed ≤ 150 ms at half that load"],
  );
  assert.deepEqual(missed(figures({ rssMb: { counters: 151, dialogs: 100 } })), [
    "each service's RSS ≤ 150 MB under load",
  ]);
});

Deno.test("figuresTable() shows every run with its ratio to the hello baseline", () => {
  const table = figuresTable(figures());
  assert.match(table, /\| \(a\) bare Hono hello \| 40000 \| 1\.00 \|/);
  assert.match(table, /sent \(b\)'s requests \(a bearer token each\) \| 35000 \| 0\.88 \|/);
  assert.match(
    table,
    /\| \(b\)'s floor: its response from a bare Deno\.serve handler \| 24000 \| 0\.60 \|/,
  );
  assert.match(targetsTable(figures()), /0\.75× \(the floor of this response on Deno: 0\.60×\)/);
  assert.match(table, /\| \(d\) sends through the whole saga .* \| 1500 \| 0\.50 × the ceiling/);
});
