/** The benchmark's table, its targets, docs/performance.md and an SVG chart. */

/** Every figure one `deno task bench` run measured. */
export interface BenchFigures {
  machine: string;
  connections: number;
  seconds: number;
  hello: Run;
  /** The same hello sent (b)'s requests: a different user's bearer token each. */
  helloWithTokens: Run;
  /** (b)'s response from a bare Deno.serve handler (bench/floor_server.ts): (b)'s floor. */
  floor: Run;
  countersLight: Run;
  countersHeavy: Run;
  naiveLight: Run;
  naiveHeavy: Run;
  pgbenchTps: number;
  sagaPerSecond: number;
  sendAcceptPerSecond: number;
  halfLoad: { rate: number; p50Ms: number; p99Ms: number; failed: number };
  rssMb: { counters: number; dialogs: number };
}

/** One wrk run. */
export interface Run {
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
}

/** A target of issue 5 and whether this run met it. */
export interface Target {
  what: string;
  measured: string;
  met: boolean;
}

/** The targets, each computed from figures of the same run. */
export function targets(f: BenchFigures): Target[] {
  const r = (a: number, b: number) => a / b;
  const flat = r(f.countersHeavy.requestsPerSecond, f.countersLight.requestsPerSecond);
  return [
    {
      what: "(b) ≥ 0.75 × (a) requests/s at 64 connections",
      measured: `${
        r(f.countersLight.requestsPerSecond, f.hello.requestsPerSecond).toFixed(2)
      }× (the floor of this response on Deno: ${
        r(f.floor.requestsPerSecond, f.hello.requestsPerSecond).toFixed(2)
      }×)`,
      met: r(f.countersLight.requestsPerSecond, f.hello.requestsPerSecond) >= 0.75,
    },
    {
      what: "(b) p99 ≤ 10 ms at 64 connections",
      measured: `${f.countersLight.p99Ms.toFixed(2)} ms`,
      met: f.countersLight.p99Ms <= 10,
    },
    {
      what: "(b) ≥ 3 × (c), light users",
      measured: `${
        r(f.countersLight.requestsPerSecond, f.naiveLight.requestsPerSecond).toFixed(1)
      }×`,
      met: r(f.countersLight.requestsPerSecond, f.naiveLight.requestsPerSecond) >= 3,
    },
    {
      what: "(b) ≥ 3 × (c), users with 10,000 unread",
      measured: `${
        r(f.countersHeavy.requestsPerSecond, f.naiveHeavy.requestsPerSecond).toFixed(1)
      }×`,
      met: r(f.countersHeavy.requestsPerSecond, f.naiveHeavy.requestsPerSecond) >= 3,
    },
    {
      what: "(b) flat as unread grows (heavy ≥ 0.9 × light)",
      measured: `${flat.toFixed(2)}×`,
      met: flat >= 0.9,
    },
    {
      what: "(d) ≥ 0.5 × the Postgres ceiling",
      measured: `${r(f.sagaPerSecond, f.pgbenchTps).toFixed(2)}×`,
      met: r(f.sagaPerSecond, f.pgbenchTps) >= 0.5,
    },
    {
      what: "(d) p99 send→committed ≤ 150 ms at half that load",
      measured: `${f.halfLoad.p99Ms.toFixed(0)} ms at ${f.halfLoad.rate.toFixed(0)}/s`,
      met: f.halfLoad.p99Ms <= 150 && f.halfLoad.failed === 0,
    },
    {
      what: "each service's RSS ≤ 150 MB under load",
      measured: `counters ${f.rssMb.counters.toFixed(0)} MB, dialogs ${
        f.rssMb.dialogs.toFixed(0)
      } MB`,
      met: f.rssMb.counters <= 150 && f.rssMb.dialogs <= 150,
    },
  ];
}

/** The figures as a Markdown table. */
export function figuresTable(f: BenchFigures): string {
  const ratio = (n: number) => (n / f.hello.requestsPerSecond).toFixed(2);
  const row = (name: string, run: Run) =>
    `| ${name} | ${run.requestsPerSecond.toFixed(0)} | ${ratio(run.requestsPerSecond)} | ${
      run.p50Ms.toFixed(2)
    } | ${run.p99Ms.toFixed(2)} | ${run.errors} |`;
  return [
    "| run | requests/s | × (a) | p50 ms | p99 ms | errors |",
    "| --- | ---: | ---: | ---: | ---: | ---: |",
    row("(a) bare Hono hello", f.hello),
    row("(a) the same hello, sent (b)'s requests (a bearer token each)", f.helloWithTokens),
    row("(b)'s floor: its response from a bare Deno.serve handler", f.floor),
    row("(b) GET /api/counters, 10,000 users", f.countersLight),
    row("(b) GET /api/counters, users with 10,000 unread", f.countersHeavy),
    row("(c) naive count over 1,000,000 messages", f.naiveLight),
    row("(c) naive count, users with 10,000 unread", f.naiveHeavy),
    "",
    "| write path | per second | note |",
    "| --- | ---: | --- |",
    `| Postgres ceiling (pgbench: insert + upsert in one transaction) | ${
      f.pgbenchTps.toFixed(0)
    } | 16 clients |`,
    `| (d) sends through the whole saga (send → committed) | ${f.sagaPerSecond.toFixed(0)} | ${
      (f.sagaPerSecond / f.pgbenchTps).toFixed(2)
    } × the ceiling; sends accepted at ${f.sendAcceptPerSecond.toFixed(0)}/s |`,
    `| (d) at half that load | ${f.halfLoad.rate.toFixed(0)} | send→terminal p50 ${
      f.halfLoad.p50Ms.toFixed(0)
    } ms, p99 ${f.halfLoad.p99Ms.toFixed(0)} ms, ${f.halfLoad.failed} failed |`,
    `| RSS under load | | counters ${f.rssMb.counters.toFixed(0)} MB, dialogs ${
      f.rssMb.dialogs.toFixed(0)
    } MB |`,
  ].join("\n");
}

/** The targets as a Markdown table. */
export function targetsTable(f: BenchFigures): string {
  return [
    "| target | measured | met |",
    "| --- | --- | --- |",
    ...targets(f).map((t) => `| ${t.what} | ${t.measured} | ${t.met ? "yes" : "**no**"} |`),
  ].join("\n");
}

/** A horizontal bar chart of the read runs' requests per second. */
export function chartSvg(f: BenchFigures): string {
  const bars: [string, number][] = [
    ["(a) bare Hono hello", f.hello.requestsPerSecond],
    ["(b) counters, 10,000 users", f.countersLight.requestsPerSecond],
    ["(b) counters, 10,000 unread", f.countersHeavy.requestsPerSecond],
    ["(c) naive count", f.naiveLight.requestsPerSecond],
    ["(c) naive, 10,000 unread", f.naiveHeavy.requestsPerSecond],
  ];
  const max = Math.max(...bars.map(([, v]) => v));
  const width = 460, left = 210, rowHeight = 34;
  const height = bars.length * rowHeight + 50;
  const rows = bars.map(([label, value], i) => {
    const y = 30 + i * rowHeight;
    const w = Math.max(1, (value / max) * width);
    return `<text x="${left - 8}" y="${y + 17}" text-anchor="end">${label}</text>` +
      `<rect x="${left}" y="${y}" width="${w.toFixed(1)}" height="24" fill="${
        i === 0 ? "#9aa5b1" : i < 3 ? "#2f80ed" : "#eb5757"
      }"/>` +
      `<text x="${left + w + 6}" y="${y + 17}">${value.toFixed(0)}</text>`;
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${
    left + width + 90
  }" height="${height}" ` +
    `font-family="sans-serif" font-size="13">` +
    `<text x="${left}" y="18" font-weight="bold">requests per second (wrk, ${f.connections} connections, ${f.seconds} s each)</text>` +
    rows.join("") + `</svg>\n`;
}

/** docs/performance.md for this run; `scaling` is the hand-written section kept between runs. */
export function performanceDoc(f: BenchFigures, command: string, scaling: string): string {
  return `# Performance

Measured by \`${command}\` on ${f.machine}. Every figure below comes from one run: the machine is
noisy, so the targets are ratios between runs made side by side, never absolute numbers. wrk (Debian's
package) drives the reads with 2 threads and ${f.connections} connections for ${f.seconds} s per run,
each request carrying a real JWT of a different user; wrk also drives the sends, from 2,000 users, as
fast as 32 connections go and then at half that rate as steady arrivals (each connection pauses a
random time between sends, so the offered load has no bursts); pgbench measures Postgres' ceiling. The services run as separate processes with \`LOG_LEVEL=warn\`, the
load generator shares the machine's 2 cores with them.

![requests per second](performance.svg)

## Figures

${figuresTable(f)}

## Targets

${targetsTable(f)}

${scaling}
`;
}
