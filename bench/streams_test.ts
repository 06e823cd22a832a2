import assert from "node:assert/strict";
import {
  churnRatios,
  peakRssMb,
  rssKbPerStream,
  streamsMethod,
  streamsTable,
  streamTargets,
} from "./report.ts";
import {
  type InstanceGauges,
  latencies,
  openFilesLimit,
  type StreamsFigures,
  type StreamsSide,
} from "./streams.ts";

Deno.test("latencies() picks p50, p99 and max of unsorted samples, NaN for none", () => {
  const samples = Array.from({ length: 200 }, (_, i) => 200 - i); // 200 … 1
  assert.deepEqual(latencies(samples), { p50Ms: 101, p99Ms: 199, maxMs: 200 });
  assert.deepEqual(latencies([7]), { p50Ms: 7, p99Ms: 7, maxMs: 7 });
  const none = latencies([]);
  assert.ok(Number.isNaN(none.p50Ms) && Number.isNaN(none.p99Ms) && Number.isNaN(none.maxMs));
});

const LIMITS = `Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            20000                65536                files
Max locked memory         8388608              8388608              bytes
`;

Deno.test("openFilesLimit() reads the soft limit on open files of /proc/<pid>/limits", () => {
  assert.equal(openFilesLimit(LIMITS), 20_000);
  assert.equal(openFilesLimit(LIMITS.replace("20000     ", "unlimited ")), Infinity);
  assert.throws(() => openFilesLimit("Max cpu time unlimited"), /Max open files/);
});

const gauges = (rssMb: number, heapMb: number, streams = 0): InstanceGauges => ({
  rssMb,
  heapMb,
  streams,
});

/** A side that opened 1,000 streams: RSS 100 → 150 MB open; `after` each round's RSS and heap. */
function side(
  after: [number, number][],
  load: Partial<StreamsSide["load"]> = {},
): StreamsSide {
  const before = gauges(100, 20);
  return {
    churn: {
      streams: 1_000,
      before,
      rounds: after.map(([rss, heap], i) => ({
        streams: 1_000,
        before,
        open: gauges(150 + i, 30, 1_000),
        rssKbPerStream: 0,
        heapKbPerStream: 0,
        releasedMs: 300 + i,
        after: gauges(rss, heap),
      })),
      rssRatio: 0,
      heapRatio: 0,
    },
    load: {
      streams: 1_000,
      sendsPerSecond: 100,
      seconds: 20,
      sent: 2_000,
      failedSends: 0,
      p50Ms: 40,
      p99Ms: 200,
      maxMs: 300,
      lost: 0,
      idle: gauges(155, 30, 1_000),
      loaded: gauges(160, 31, 1_000),
      idleCpuPercent: 1.5,
      idleSeconds: 10,
      cpuMsPerSend: 0.42,
      openedInMs: 4_000,
      releaseMs: [20, 450, 30],
      ...load,
    },
  };
}

const met = (): StreamsFigures => ({
  counters: side([[105, 21], [108, 21], [109, 22]], {
    sagaMeanMs: 120,
    commitToEvent: { p50Ms: 4, p99Ms: 30, maxMs: 41, samples: 1_900 },
  }),
  floor: side([[140, 21], [141, 21], [142, 21]], { p50Ms: 2, p99Ms: 9 }),
});

Deno.test("a side's RSS per stream, peak RSS and churn ratios come from its rounds and load", () => {
  const { counters } = met();
  assert.equal(rssKbPerStream(counters), 50 * 1024 / 1_000); // (150 - 100) MB over 1,000
  assert.equal(peakRssMb(counters), 160); // the load's, above every round's open RSS
  assert.deepEqual(churnRatios(counters), { rss: [1.05, 1.08, 1.09], heap: [1.05, 1.05, 1.1] });
});

Deno.test("streamTargets() are all met by figures that meet them", () => {
  assert.deepEqual(streamTargets(met()).map((t) => [t.what, t.met]), [
    ["(f) p99 send → counters event ≤ 250 ms, 1,000 streams, 100 sends/s", true],
    ["(f) counters RSS ≤ 300 MB with 1,000 streams", true],
    [
      "(f) heap after each of 3 rounds of 1,000 connects and disconnects within 10% of before",
      true,
    ],
    ["(f) RSS after each of 3 rounds of 1,000 connects and disconnects within 10% of before", true],
    ["(f) a closed client's stream released within 1 s", true],
  ]);
});

Deno.test("each (f) target is missed by the figure it bounds", () => {
  const missed = (counters: StreamsSide) =>
    streamTargets({ ...met(), counters }).filter((t) => !t.met).map((t) => t.what.slice(0, 16));
  const load = met().counters.load;
  const rounds = (after: [number, number][]) => side(after);
  assert.deepEqual(missed(side([[105, 21]], { p99Ms: 251 })), ["(f) p99 send → c"]);
  assert.deepEqual(missed(side([[105, 21]], { lost: 1 })), ["(f) p99 send → c"]);
  assert.deepEqual(missed(side([[105, 21]], { failedSends: 1 })), ["(f) p99 send → c"]);
  assert.deepEqual(missed(side([[105, 21]], { loaded: { ...load.loaded, rssMb: 301 } })), [
    "(f) counters RSS",
  ]);
  assert.deepEqual(missed(rounds([[105, 21], [105, 22.5]])), ["(f) heap after e"]);
  assert.deepEqual(missed(rounds([[111, 21], [105, 21]])), ["(f) RSS after ea"]);
  assert.deepEqual(missed(side([[105, 21]], { releaseMs: [20, 1_001] })), ["(f) a closed cli"]);
  assert.deepEqual(missed(side([[105, 21]], { releaseMs: [] })), ["(f) a closed cli"]);
});

Deno.test("the (f) targets print the floor's figure beside counters'", () => {
  const [latency, rss, , churn, release] = streamTargets(met()).map((t) => t.measured);
  assert.equal(
    latency,
    "200 ms (p50 40 ms; 0 missing, 0 failed of 2,000; the sagas' own send → committed: 120 ms " +
      "on average; counters commit → event p99 30 ms over 1,900 sends); floor push → event p99 9 ms",
  );
  assert.equal(
    rss,
    "160 MB (51.2 KB/stream); floor: a bare Deno.serve holding 1,000 ReadableStreams 160 MB " +
      "(51.2 KB/stream)",
  );
  assert.equal(
    churn,
    "1.05×, 1.08×, 1.09× (100 MB before); floor 1.40×, 1.41×, 1.42× (100 MB before)",
  );
  assert.equal(
    release,
    "at most 450 ms over 3 clients closed one at a time; all 1,000 closed at once: 302 ms at most",
  );
});

Deno.test("streamsTable() puts counters and the floor side by side", () => {
  const table = streamsTable(met());
  assert.match(
    table,
    /\| \(f\) counters: send → counters event \| 1,000 \| 100 \| 160 \| 51\.2 \| 40 \| 200 \| 1\.5 \| 0\.42 \| 105 \/ 108 \/ 109 \| 21 \/ 21 \/ 22 \(20\) \| 450 \|/,
  );
  assert.match(
    table,
    /\| \(f\)'s floor: bare Deno\.serve, push → event \| 1,000 \| .* \| 2 \| 9 \|/,
  );
  assert.match(streamsMethod(met()), /opens 1,000 `GET \/api\/counters\/stream` connections/);
});
