import assert from "node:assert/strict";
import {
  type BenchFigures,
  chartSvg,
  figuresTable,
  type GroupFigures,
  performanceDoc,
  targets,
  targetsTable,
} from "./report.ts";
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
    single: run(2_000, 40),
    sagaPerSecond: 1_500,
    sendAcceptPerSecond: 1_600,
    halfLoad: { rate: 750, p50Ms: 40, p99Ms: 100, failed: 0 },
    rssMb: { counters: 120, dialogs: 110 },
    ...overrides,
  };
}

Deno.test("targets() are all met by figures that meet them, and each can be missed", () => {
  assert.deepEqual(targets(figures()).filter((t) => !t.met), []);
  const missed = (f: BenchFigures) => targets(f).filter((t) => !t.met).map((t) => t.what);
  assert.deepEqual(missed(figures({ countersLight: run(21_000, 6) })), [
    "(b) ≥ 0.9 × floor requests/s at 64 connections, 10,000 users",
    "(b) p99 ≤ 5 ms at 64 connections, 10,000 users",
  ]);
  assert.deepEqual(missed(figures({ countersHeavy: run(21_500, 5.5) })), [
    "(b) ≥ 0.9 × floor requests/s at 64 connections, users with 10,000 unread",
    "(b) p99 ≤ 5 ms at 64 connections, users with 10,000 unread",
    "(b) flat as unread grows (heavy ≥ 0.9 × light)",
  ]);
  const saga = "(d) ≥ 0.75 × (e) sends/s, the same sends without a saga";
  assert.deepEqual(missed(figures({ sagaPerSecond: 1_499 })), [saga]);
  assert.deepEqual(missed(figures({ single: run(2_001) })), [saga]);
  // pgbench's ceiling is for information only: far above the saga, it misses nothing.
  assert.deepEqual(missed(figures({ pgbenchTps: 50_000 })), []);
  const half = "(d) p99 send→committed ≤ 100 ms at half of (d)'s rate";
  assert.deepEqual(
    missed(figures({ halfLoad: { rate: 750, p50Ms: 40, p99Ms: 101, failed: 0 } })),
    [half],
  );
  assert.deepEqual(
    missed(figures({ halfLoad: { rate: 750, p50Ms: 40, p99Ms: 90, failed: 1 } })),
    [half],
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
  assert.match(targetsTable(figures()), /1\.25× \(30000 vs 24000\/s\)/);
  assert.match(table, /\| \(d\) sends through the whole saga .* \| 1500 \| 0\.75 × \(e\);/);
});

Deno.test("the write-path table shows (e) beside (d), and pgbench's ceiling for information", () => {
  const table = figuresTable(figures());
  assert.match(
    table,
    /\| \(e\) the same sends without a saga: .* \| 2000 \| 32 connections; answered \(= committed\) p50 1 ms, p99 40 ms, 0 errors \|/,
  );
  assert.match(table, /\| Postgres ceiling .* \| 3000 \| 16 clients; for information/);
  assert.match(targetsTable(figures()), /\| 0\.75× \(1500\/s vs 2000\/s\) \| yes \|/);
  assert.match(targetsTable(figures()), /\| 100 ms at 750\/s \| yes \|/);
  assert.doesNotMatch(targetsTable(figures()), /Postgres ceiling/);
});

const sends = (members: number, p99Ms: number, rowsPerMessage = 9, failed = 0) => ({
  members,
  count: 1_000,
  failed,
  p50Ms: 20,
  p99Ms,
  rowsPerMessage,
});

function groupFigures(overrides: Partial<GroupFigures> = {}): GroupFigures {
  return {
    rate: 100,
    ceiling: 210,
    large: sends(10_000, 60),
    small: sends(2, 55),
    conversations: 50,
    readers: 1_000,
    groupSize: 500,
    readGroups: run(20_000),
    readDialogs: run(24_000),
    streams: {
      streams: 1_000,
      messages: 50,
      rate: 5,
      samples: 50_000,
      missing: 0,
      p50Ms: 80,
      p99Ms: 400,
      maxMs: 700,
      rssMb: 140,
    },
    ...overrides,
  };
}

const missedOf = (f: BenchFigures) => targets(f).filter((t) => !t.met).map((t) => t.what);

Deno.test("targets() leave the group targets out of a run without groups", () => {
  assert.equal(targets(figures()).filter((t) => t.what.startsWith("(g")).length, 0);
  assert.doesNotMatch(figuresTable(figures()), /\(g1\)/);
});

Deno.test("group targets are all met by figures that meet them", () => {
  const all = targets(figures({ groups: groupFigures() }));
  assert.deepEqual(all.filter((t) => t.what.startsWith("(g")).map((t) => [t.what, t.met]), [
    ["(g1) p99 send→committed, 10,000-member group ≤ 1.2 × 2-member group", true],
    ["(g1) rows written in counters per group message, whatever the group's size", true],
    ["(g2) GET /api/counters, 50 groups ≥ 0.8 × 50 dialogs", true],
    ["(g3) commit → counters event p99 ≤ 1 s, 1,000 streams on one counters instance", true],
  ]);
});

Deno.test("each group target is missed by the figure it bounds", () => {
  const g1 = "(g1) p99 send→committed, 10,000-member group ≤ 1.2 × 2-member group";
  const rows = "(g1) rows written in counters per group message, whatever the group's size";
  const g2 = "(g2) GET /api/counters, 50 groups ≥ 0.8 × 50 dialogs";
  const g3 = "(g3) commit → counters event p99 ≤ 1 s, 1,000 streams on one counters instance";
  const missed = (g: Partial<GroupFigures>) => missedOf(figures({ groups: groupFigures(g) }));
  assert.deepEqual(missed({ large: sends(10_000, 67) }), [g1]);
  assert.deepEqual(missed({ large: sends(10_000, 60, 9, 1) }), [g1]);
  assert.deepEqual(missed({ small: sends(2, 55, 9, 2) }), [g1]);
  assert.deepEqual(missed({ large: sends(10_000, 60, 10.5) }), [rows]);
  assert.deepEqual(missed({ large: sends(10_000, 60, 10) }), []);
  assert.deepEqual(missed({ readGroups: run(19_000) }), [g2]);
  assert.deepEqual(missed({ readGroups: { ...run(20_000), errors: 1 } }), [g2]);
  const streams = groupFigures().streams;
  assert.deepEqual(missed({ streams: { ...streams, p99Ms: 1_001 } }), [g3]);
  assert.deepEqual(missed({ streams: { ...streams, missing: 1 } }), [g3]);
  assert.deepEqual(missed({ streams: { ...streams, samples: 0 } }), [g3]);
});

Deno.test("the targets table prints each group figure beside its target", () => {
  const table = targetsTable(figures({ groups: groupFigures() }));
  assert.match(table, /\| 1\.09× \(60 ms vs 55 ms at 100\/s\) \| yes \|/);
  assert.match(table, /\| 9\.0 \(10,000 members\), 9\.0 \(2 members\) \| yes \|/);
  assert.match(table, /\| 0\.83× \| yes \|/);
  assert.match(table, /\| 400 ms over 50,000 events; counters RSS 140 MB \| yes \|/);
  const late = groupFigures({ streams: { ...groupFigures().streams, p99Ms: 1_500, missing: 3 } });
  assert.match(
    targetsTable(figures({ groups: late })),
    /\| 1500 ms over 50,000 events, 3 never shown; counters RSS 140 MB \| \*\*no\*\* \|/,
  );
});

Deno.test("figuresTable() adds the group sends, reads and streams", () => {
  const table = figuresTable(figures({ groups: groupFigures() }));
  assert.match(table, /\| \(g1\) 2-member group at full speed \(16 connections\) \| 210 \|/);
  assert.doesNotMatch(
    figuresTable(figures({ groups: groupFigures({ ceiling: 0 }) })),
    /at full speed/,
  );
  assert.match(
    table,
    /\| \(g1\) sends to a 2-member group \| 100 \| 20 \| 55 \| 0 of 1,000 \| 9\.0 \|/,
  );
  assert.match(
    table,
    /\| \(g1\) sends to a 10,000-member group \| 100 \| 20 \| 60 \| 0 of 1,000 \| 9\.0 \|/,
  );
  assert.match(
    table,
    /\| \(g2\) GET \/api\/counters, users in 50 groups \| 20000 \| 1\.00 \| 5\.00 \| 0 \|/,
  );
  assert.match(table, /\| \(g2\) GET \/api\/counters, users with 50 dialogs \| 24000 \|/);
  assert.match(
    table,
    /\| \(g3\) commit → counters event, 10,000-member group at 5\/s \| 1,000 \| 50 \| 50,000 \| 80 \| 400 \| 700 \| 140 \|/,
  );
});

Deno.test("performanceDoc() explains the group method only when the run measured groups", () => {
  const kept = "<!-- kept -->";
  assert.doesNotMatch(performanceDoc(figures(), "deno task bench", kept), /Groups \(issue 14\)/);
  assert.match(
    performanceDoc(figures(), "deno task bench", kept),
    /the same wrk load sends to \(e\), `bench\/single_send_server\.ts`/,
  );
  const doc = performanceDoc(figures({ groups: groupFigures() }), "deno task bench", kept);
  assert.match(
    doc,
    /Groups \(issue 14\): \(g1\) the bench process sends to a 2-member group and then to a 10,000-member group/,
  );
  assert.match(doc, /1,000 users each in 50 groups of 500 members/);
  assert.match(doc, /100 sends\/s each \(a quarter of the 210\/s the 2-member group's saga does/);
  assert.match(doc, /both groups sent to\s+at once/);
  assert.match(doc, /\(g3\) 1,000 members of the large group/);
  assert.ok(doc.trimEnd().endsWith(kept));
});

Deno.test("chartSvg() draws (b) beside its floor and (d) beside (e), each bar with its value", () => {
  const svg = chartSvg(figures());
  for (
    const label of [
      "(b)'s floor (bare Deno.serve)",
      "(e) the same sends, no saga",
      "(d) through the saga",
    ]
  ) {
    assert.ok(svg.includes(`>${label}</text>`), label);
  }
  assert.ok(svg.includes(">24000</text>"), "the floor's value");
  assert.ok(svg.includes(">1500</text>") && svg.includes(">2000</text>"), "(d)'s and (e)'s values");
});

Deno.test("targets() leaves out the parts a run did not measure", () => {
  const noWrites = figures({ single: run(0), sagaPerSecond: 0 });
  assert.ok(targets(noWrites).every((t) => !t.what.startsWith("(d)")));
  assert.ok(targets(noWrites).some((t) => t.what.startsWith("(b)")));
  const noReads = figures({ floor: run(0) });
  assert.ok(targets(noReads).every((t) => !t.what.startsWith("(b)")));
  assert.ok(targets(noReads).some((t) => t.what.startsWith("(d)")));
});
