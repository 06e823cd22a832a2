/** A small Prometheus registry: labelled counters, gauges read at scrape time, and histograms. */

type Labels = Record<string, string>;

function labelKey(labels: Labels): string {
  const entries = Object.entries(labels).sort(([a], [b]) => a.localeCompare(b));
  return entries.map(([k, v]) => `${k}="${v.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`)
    .join(",");
}

// Cheap identity of a label set on the hot path; callers pass their labels in a fixed order.
function seriesKey(labels: Labels): string {
  let key = "";
  for (const name in labels) key += `${name}\u0001${labels[name]}\u0002`;
  return key;
}

function withLabels(name: string, key: string, extra = ""): string {
  const all = [key, extra].filter(Boolean).join(",");
  return all ? `${name}{${all}}` : name;
}

/** A monotonically increasing count per label set. */
export interface Counter {
  inc(labels?: Labels, by?: number): void;
}

/** A distribution of observed values in fixed buckets. */
export interface Histogram {
  observe(value: number, labels?: Labels): void;
  /**
   * The series of one label set, to observe without naming its labels each time (a hot path
   * keeps it); the series shows in the output from its first observation.
   */
  series(labels: Labels): HistogramSeries;
}

/** One label set of a histogram. */
export interface HistogramSeries {
  observe(value: number): void;
}

/** A set of metrics rendered together in the Prometheus text format. */
export interface Metrics {
  counter(name: string, help: string): Counter;
  histogram(name: string, help: string, buckets: number[]): Histogram;
  /** A gauge whose value is read when `/metrics` is scraped. */
  gauge(name: string, help: string, read: () => Promise<number> | number): void;
  render(): Promise<string>;
}

/** Default latency buckets in seconds. */
export const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/** Creates an empty registry. */
export function createMetrics(): Metrics {
  const renderers: (() => Promise<string[]>)[] = [];
  return {
    counter(name, help) {
      const values = new Map<string, { labels: Labels; value: number }>();
      renderers.push(() =>
        Promise.resolve([
          `# HELP ${name} ${help}`,
          `# TYPE ${name} counter`,
          ...[...values.values()].map((v) => `${withLabels(name, labelKey(v.labels))} ${v.value}`),
        ])
      );
      return {
        inc(labels = {}, by = 1) {
          const key = seriesKey(labels);
          const series = values.get(key);
          if (series) series.value += by;
          else values.set(key, { labels, value: by });
        },
      };
    },
    histogram(name, help, buckets) {
      interface Series {
        labels: Labels;
        counts: number[];
        sum: number;
        count: number;
      }
      const series = new Map<string, Series>();
      renderers.push(() => {
        const lines = [`# HELP ${name} ${help}`, `# TYPE ${name} histogram`];
        for (const s of series.values()) {
          if (s.count === 0) continue;
          const key = labelKey(s.labels);
          buckets.forEach((b, i) =>
            lines.push(`${withLabels(`${name}_bucket`, key, `le="${b}"`)} ${s.counts[i]}`)
          );
          lines.push(`${withLabels(`${name}_bucket`, key, 'le="+Inf"')} ${s.count}`);
          lines.push(`${withLabels(`${name}_sum`, key)} ${s.sum}`);
          lines.push(`${withLabels(`${name}_count`, key)} ${s.count}`);
        }
        return Promise.resolve(lines);
      });
      const seriesOf = (labels: Labels) => {
        const key = seriesKey(labels);
        let s = series.get(key);
        if (!s) series.set(key, s = { labels, counts: buckets.map(() => 0), sum: 0, count: 0 });
        return s;
      };
      const add = (s: Series, value: number) => {
        for (let i = 0; i < buckets.length; i++) if (value <= buckets[i]!) s.counts[i]!++;
        s.sum += value;
        s.count++;
      };
      return {
        observe(value, labels = {}) {
          add(seriesOf(labels), value);
        },
        series(labels) {
          const s = seriesOf(labels);
          return { observe: (value) => add(s, value) };
        },
      };
    },
    gauge(name, help, read) {
      renderers.push(async () => {
        let value: number;
        try {
          value = await read();
        } catch {
          value = Number.NaN;
        }
        return [`# HELP ${name} ${help}`, `# TYPE ${name} gauge`, `${name} ${value}`];
      });
    },
    async render() {
      const parts = await Promise.all(renderers.map((r) => r()));
      return parts.flat().join("\n") + "\n";
    },
  };
}
