import assert from "node:assert/strict";

const ROOT = new URL("../", import.meta.url);
const DASHBOARD = new URL("docs/grafana/unread-counters.json", ROOT);

/** Every `"name"` string literal in the services' code (tests left out). */
async function namesInServiceCode(): Promise<Set<string>> {
  const names = new Set<string>();
  for (const dir of ["shared", "dialogs", "counters"]) {
    for await (const file of walk(new URL(`${dir}/`, ROOT))) {
      const text = await Deno.readTextFile(file);
      for (const m of text.matchAll(/"([a-z][a-z0-9_]*)"/g)) names.add(m[1]!);
    }
  }
  return names;
}

async function* walk(dir: URL): AsyncGenerator<URL> {
  for await (const entry of Deno.readDir(dir)) {
    const url = new URL(entry.name + (entry.isDirectory ? "/" : ""), dir);
    if (entry.isDirectory) yield* walk(url);
    else if (entry.name.endsWith(".ts") && !entry.name.endsWith("_test.ts")) yield url;
  }
}

/** The metric names a PromQL expression reads (a histogram's series named by the histogram). */
function metricsIn(expr: string): string[] {
  const withoutLabels = expr.replace(/\{[^}]*\}/g, "").replace(/\[[^\]]*\]/g, "");
  const words = withoutLabels.match(/\b[a-z_][a-z0-9_]*\b/g) ?? [];
  const promql = new Set(["histogram_quantile", "sum", "max", "rate", "by", "le"]);
  const labels = new Set(["job", "type", "status", "result", "instance", "route"]);
  return words
    .filter((w) => w.includes("_") && !promql.has(w) && !labels.has(w))
    .map((w) => w.replace(/_(bucket|count|sum)$/, ""));
}

interface Panel {
  title: string;
  targets: { expr: string }[];
}

Deno.test("metricsIn() finds the metrics of an expression, not its functions or labels", () => {
  assert.deepEqual(
    metricsIn(
      'histogram_quantile(0.99, sum by (le) (rate(saga_send_to_terminal_seconds_bucket{job=~"$d"}[5m])))',
    ),
    ["saga_send_to_terminal_seconds"],
  );
  assert.deepEqual(metricsIn("max by (job) (saga_consumer_pending)"), ["saga_consumer_pending"]);
});

Deno.test("the Grafana dashboard reads only metrics the services export, and the ones the issue names", async () => {
  const dashboard = JSON.parse(await Deno.readTextFile(DASHBOARD)) as { panels: Panel[] };
  const exported = await namesInServiceCode();
  const read = new Set<string>();
  for (const panel of dashboard.panels) {
    assert.ok(panel.targets.length > 0, panel.title);
    for (const { expr } of panel.targets) {
      const metrics = metricsIn(expr);
      assert.ok(metrics.length > 0, `${panel.title}: no metric in ${expr}`);
      for (const metric of metrics) {
        assert.ok(exported.has(metric), `${panel.title}: no service exports ${metric}`);
        read.add(metric);
      }
    }
  }
  for (
    const wanted of [
      "saga_send_to_terminal_seconds",
      "saga_event_redeliveries_total",
      "saga_consumer_pending",
      "saga_dead_letters",
      "counters_cache_lookups_total",
      "counters_live_streams",
    ]
  ) assert.ok(read.has(wanted), `the dashboard shows no ${wanted}`);
});
