/** A small Prometheus registry: labelled counters, gauges read at scrape time, and histograms. */

type Labels = Record<string, string>;

function labelKey(labels: Labels): string {
  const entries = Object.entries(labels).sort(([a], [b]) => a.localeCompare(b));
  return entries.map(([k, v]) => `${k}="${v.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`)
    .join(",");
}

/** A node of a metric's series index: the series whose labels lead here, and the next labels. */
interface SeriesNode<S> {
  series?: S;
  next?: Map<string, Map<string, SeriesNode<S>>>;
}

/**
 * A metric's series by label set, found by walking the labels as given (callers name them in a
 * fixed order) through nested maps: the hot path builds no key string. `all` keeps them in the
 * order they were made.
 */
function seriesIndex<S>(make: (labels: Labels) => S): { find(labels: Labels): S; all: S[] } {
  const root: SeriesNode<S> = {};
  const all: S[] = [];
  return {
    all,
    find(labels) {
      let node = root;
      for (const name in labels) {
        const byName = node.next ??= new Map();
        let byValue = byName.get(name);
        if (!byValue) byName.set(name, byValue = new Map());
        const value = labels[name]!;
        let child = byValue.get(value);
        if (!child) byValue.set(value, child = {});
        node = child;
      }
      if (!node.series) all.push(node.series = make({ ...labels }));
      return node.series;
    },
  };
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
      const values = seriesIndex((labels) => ({ labels, value: 0 }));
      renderers.push(() =>
        Promise.resolve([
          `# HELP ${name} ${help}`,
          `# TYPE ${name} counter`,
          ...values.all.map((v) => `${withLabels(name, labelKey(v.labels))} ${v.value}`),
        ])
      );
      return {
        inc(labels = {}, by = 1) {
          values.find(labels).value += by;
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
      const series = seriesIndex<Series>((labels) => ({
        labels,
        counts: buckets.map(() => 0),
        sum: 0,
        count: 0,
      }));
      renderers.push(() => {
        const lines = [`# HELP ${name} ${help}`, `# TYPE ${name} histogram`];
        for (const s of series.all) {
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
      const add = (s: Series, value: number) => {
        for (let i = 0; i < buckets.length; i++) if (value <= buckets[i]!) s.counts[i]!++;
        s.sum += value;
        s.count++;
      };
      return {
        observe(value, labels = {}) {
          add(series.find(labels), value);
        },
        series(labels) {
          const s = series.find(labels);
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
