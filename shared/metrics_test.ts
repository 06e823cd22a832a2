import assert from "node:assert/strict";
import { createMetrics } from "./metrics.ts";

Deno.test("createMetrics() renders counters, histograms and gauges in Prometheus text format", async () => {
  const metrics = createMetrics();
  const c = metrics.counter("things_total", "Things");
  c.inc({ kind: "a" });
  c.inc({ kind: "a" }, 2);
  c.inc({ kind: 'q"uote' });
  metrics.histogram("latency_seconds", "Latency", [0.1, 1]).observe(0.5, { route: "/x" });
  metrics.gauge("backlog", "Backlog", () => 7);
  metrics.gauge("broken", "Broken", () => Promise.reject(new Error("down")));
  const text = await metrics.render();
  assert.match(text, /# TYPE things_total counter\n/);
  assert.match(text, /things_total\{kind="a"\} 3\n/);
  assert.match(text, /things_total\{kind="q\\"uote"\} 1\n/);
  assert.match(text, /latency_seconds_bucket\{route="\/x",le="0.1"\} 0\n/);
  assert.match(text, /latency_seconds_bucket\{route="\/x",le="1"\} 1\n/);
  assert.match(text, /latency_seconds_bucket\{route="\/x",le="\+Inf"\} 1\n/);
  assert.match(text, /latency_seconds_count\{route="\/x"\} 1\n/);
  assert.match(text, /backlog 7\n/);
  assert.match(text, /broken NaN\n/);
});

Deno.test("Histogram.series() observes into the same series as observe() with those labels", async () => {
  const metrics = createMetrics();
  const latency = metrics.histogram("latency_seconds", "Latency", [0.1, 1]);
  const series = latency.series({ route: "/x", status: "200" });
  assert.doesNotMatch(await metrics.render(), /latency_seconds_count/);
  series.observe(0.05);
  latency.observe(0.5, { route: "/x", status: "200" });
  const text = await metrics.render();
  assert.match(text, /latency_seconds_bucket\{route="\/x",status="200",le="0.1"\} 1\n/);
  assert.match(text, /latency_seconds_count\{route="\/x",status="200"\} 2\n/);
  assert.match(text, /latency_seconds_sum\{route="\/x",status="200"\} 0.55\n/);
});
