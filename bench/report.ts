/** The benchmark's table, its targets, docs/performance.md and an SVG chart. */
import type { StreamsFigures, StreamsSide } from "./streams.ts";

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
  /** Postgres' ceiling for one send-shaped transaction (pgbench); for information. */
  pgbenchTps: number;
  /**
   * (e) the same sends as (d), with the same wrk load, answered by one process without a saga
   * (bench/single_send_server.ts): each 202 is a committed, counted message.
   */
  single: Run;
  sagaPerSecond: number;
  sendAcceptPerSecond: number;
  halfLoad: { rate: number; p50Ms: number; p99Ms: number; failed: number };
  rssMb: { counters: number; dialogs: number };
  /** Issue 14's group measurements; absent from a run with `--no-groups`. */
  groups?: GroupFigures;
  /** (f), issue 15's live streams; absent from a run with `--no-streams`. */
  streams?: StreamsFigures;
}

/** Sends to one group at a fixed rate, through the whole saga. */
export interface GroupSends {
  /** Members of the group. */
  members: number;
  count: number;
  failed: number;
  /** send → committed (or failed) percentiles. */
  p50Ms: number;
  p99Ms: number;
  /** Rows inserted, updated or deleted in the counters database per message sent. */
  rowsPerMessage: number;
}

/** Live streams of one group's members on one counters instance while the group gets messages. */
export interface StreamFigures {
  streams: number;
  /** Committed messages sent while the streams were open, and their rate. */
  messages: number;
  rate: number;
  /** commit → `counters` event samples: one per stream and message. */
  samples: number;
  /** Messages some stream never showed within the wait. */
  missing: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** The counters instance's peak RSS while it served the streams. */
  rssMb: number;
}

/** What the group part of a run (issue 14) measured. */
export interface GroupFigures {
  /** (g1) the same offered load, sends per second, to a large and to a 2-member group. */
  rate: number;
  /** The 2-member group's sends per second at full speed, whose half `rate` is; 0 when fixed. */
  ceiling: number;
  large: GroupSends;
  small: GroupSends;
  /**
   * (g2) GET /api/counters for `readers` users each in `conversations` groups of `groupSize`
   * members vs as many users with as many dialogs.
   */
  conversations: number;
  readers: number;
  groupSize: number;
  readGroups: Run;
  readDialogs: Run;
  /** (g3) streams of the large group's members on one counters instance. */
  streams: StreamFigures;
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

const count = (n: number) => n.toLocaleString("en-US");

/** Issue 14's targets, each computed from figures of the same run. */
export function groupTargets(g: GroupFigures): Target[] {
  const latency = g.large.p99Ms / g.small.p99Ms;
  const reads = g.readGroups.requestsPerSecond / g.readDialogs.requestsPerSecond;
  return [
    {
      what: `(g1) p99 send→committed, ${count(g.large.members)}-member group ≤ 1.2 × ${
        count(g.small.members)
      }-member group`,
      measured: `${latency.toFixed(2)}× (${g.large.p99Ms.toFixed(0)} ms vs ${
        g.small.p99Ms.toFixed(0)
      } ms at ${g.rate.toFixed(0)}/s)`,
      met: latency <= 1.2 && g.large.failed === 0 && g.small.failed === 0,
    },
    {
      what: "(g1) rows written in counters per group message, whatever the group's size",
      measured: `${g.large.rowsPerMessage.toFixed(1)} (${count(g.large.members)} members), ${
        g.small.rowsPerMessage.toFixed(1)
      } (${count(g.small.members)} members)`,
      // A constant: the large group may write no more than the small one, give or take a row.
      met: g.large.rowsPerMessage <= g.small.rowsPerMessage + 1,
    },
    {
      what: `(g2) GET /api/counters, ${g.conversations} groups ≥ 0.8 × ${g.conversations} dialogs`,
      measured: `${reads.toFixed(2)}×`,
      met: reads >= 0.8 && g.readGroups.errors === 0 && g.readDialogs.errors === 0,
    },
    {
      what: `(g3) commit → counters event p99 ≤ 1 s, ${
        count(g.streams.streams)
      } streams on one counters instance`,
      measured: `${g.streams.p99Ms.toFixed(0)} ms over ${count(g.streams.samples)} events${
        g.streams.missing ? `, ${g.streams.missing} never shown` : ""
      }; counters RSS ${g.streams.rssMb.toFixed(0)} MB`,
      met: g.streams.p99Ms <= 1000 && g.streams.missing === 0 && g.streams.samples > 0,
    },
  ];
}

/** The targets, each computed from figures of the same run. */
export function targets(f: BenchFigures): Target[] {
  // A part the run left out (--no-read, --no-write) has no targets to meet or miss.
  const readsMeasured = f.floor.requestsPerSecond > 0;
  const writesMeasured = f.single.requestsPerSecond > 0 || f.sagaPerSecond > 0;
  return allTargets(f).filter((t) =>
    t.what.startsWith("(b)") ? readsMeasured : t.what.startsWith("(d)") ? writesMeasured : true
  );
}

/** Every target of the reads and the write path, measured or not. */
function allTargets(f: BenchFigures): Target[] {
  const r = (a: number, b: number) => a / b;
  const flat = r(f.countersHeavy.requestsPerSecond, f.countersLight.requestsPerSecond);
  return [
    ...([["10,000 users", f.countersLight], ["users with 10,000 unread", f.countersHeavy]] as const)
      .flatMap(([who, run]) => [
        {
          what: `(b) ≥ 0.9 × floor requests/s at 64 connections, ${who}`,
          measured: `${r(run.requestsPerSecond, f.floor.requestsPerSecond).toFixed(2)}× (${
            run.requestsPerSecond.toFixed(0)
          } vs ${f.floor.requestsPerSecond.toFixed(0)}/s)`,
          met: r(run.requestsPerSecond, f.floor.requestsPerSecond) >= 0.9,
        },
        {
          what: `(b) p99 ≤ 5 ms at 64 connections, ${who}`,
          measured: `${run.p99Ms.toFixed(2)} ms (the floor's: ${f.floor.p99Ms.toFixed(2)} ms)`,
          met: run.p99Ms <= 5,
        },
      ]),
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
      what: "(d) ≥ 0.75 × (e) sends/s, the same sends without a saga",
      measured: `${r(f.sagaPerSecond, f.single.requestsPerSecond).toFixed(2)}× (${
        f.sagaPerSecond.toFixed(0)
      }/s vs ${f.single.requestsPerSecond.toFixed(0)}/s)`,
      met: r(f.sagaPerSecond, f.single.requestsPerSecond) >= 0.75,
    },
    {
      what: "(d) p99 send→committed ≤ 100 ms at half of (d)'s rate",
      measured: `${f.halfLoad.p99Ms.toFixed(0)} ms at ${f.halfLoad.rate.toFixed(0)}/s`,
      met: f.halfLoad.p99Ms <= 100 && f.halfLoad.failed === 0,
    },
    {
      what: "each service's RSS ≤ 150 MB under load",
      measured: `counters ${f.rssMb.counters.toFixed(0)} MB, dialogs ${
        f.rssMb.dialogs.toFixed(0)
      } MB`,
      met: f.rssMb.counters <= 150 && f.rssMb.dialogs <= 150,
    },
    ...(f.groups ? groupTargets(f.groups) : []),
    ...(f.streams ? streamTargets(f.streams) : []),
  ];
}

/** The group figures as Markdown tables. */
export function groupsTable(g: GroupFigures): string {
  const sends = (s: GroupSends) =>
    `| (g1) sends to a ${count(s.members)}-member group | ${g.rate.toFixed(0)} | ${
      s.p50Ms.toFixed(0)
    } | ${s.p99Ms.toFixed(0)} | ${s.failed} of ${count(s.count)} | ${
      s.rowsPerMessage.toFixed(1)
    } |`;
  const read = (name: string, run: Run) =>
    `| ${name} | ${run.requestsPerSecond.toFixed(0)} | ${run.p50Ms.toFixed(2)} | ${
      run.p99Ms.toFixed(2)
    } | ${run.errors} |`;
  const st = g.streams;
  return [
    "| group sends (send → committed) | offered /s | p50 ms | p99 ms | failed | rows in counters per message |",
    "| --- | ---: | ---: | ---: | ---: | ---: |",
    ...(g.ceiling
      ? [`| (g1) 2-member group at full speed (16 connections) | ${g.ceiling.toFixed(0)} | | | | |`]
      : []),
    sends(g.small),
    sends(g.large),
    "",
    "| group reads | requests/s | p50 ms | p99 ms | errors |",
    "| --- | ---: | ---: | ---: | ---: |",
    read(`(g2) GET /api/counters, users in ${g.conversations} groups`, g.readGroups),
    read(`(g2) GET /api/counters, users with ${g.conversations} dialogs`, g.readDialogs),
    "",
    "| live streams | streams | messages | events | p50 ms | p99 ms | max ms | counters RSS MB |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    `| (g3) commit → counters event, ${count(g.large.members)}-member group at ${
      st.rate.toFixed(0)
    }/s | ${count(st.streams)} | ${st.messages} | ${count(st.samples)} | ${st.p50Ms.toFixed(0)} | ${
      st.p99Ms.toFixed(0)
    } | ${st.maxMs.toFixed(0)} | ${st.rssMb.toFixed(0)} |`,
  ].join("\n");
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
    `| (e) the same sends without a saga: one Deno + Hono process, one transaction each | ${
      f.single.requestsPerSecond.toFixed(0)
    } | 32 connections; answered (= committed) p50 ${f.single.p50Ms.toFixed(0)} ms, p99 ${
      f.single.p99Ms.toFixed(0)
    } ms, ${f.single.errors} errors |`,
    `| (d) sends through the whole saga (send → committed) | ${f.sagaPerSecond.toFixed(0)} | ${
      (f.sagaPerSecond / f.single.requestsPerSecond).toFixed(2)
    } × (e); sends accepted at ${f.sendAcceptPerSecond.toFixed(0)}/s |`,
    `| (d) at half that load | ${f.halfLoad.rate.toFixed(0)} | send→terminal p50 ${
      f.halfLoad.p50Ms.toFixed(0)
    } ms, p99 ${f.halfLoad.p99Ms.toFixed(0)} ms, ${f.halfLoad.failed} failed |`,
    `| RSS under load | | counters ${f.rssMb.counters.toFixed(0)} MB, dialogs ${
      f.rssMb.dialogs.toFixed(0)
    } MB |`,
    `| Postgres ceiling (pgbench: insert + upsert in one transaction) | ${
      f.pgbenchTps.toFixed(0)
    } | 16 clients; for information: no HTTP, no JSON, no token |`,
    ...(f.groups ? ["", groupsTable(f.groups)] : []),
    ...(f.streams ? ["", streamsTable(f.streams)] : []),
  ].join("\n");
}

/** `list` as a Markdown table. */
export function targetsMarkdown(list: Target[]): string {
  return [
    "| target | measured | met |",
    "| --- | --- | --- |",
    ...list.map((t) => `| ${t.what} | ${t.measured} | ${t.met ? "yes" : "**no**"} |`),
  ].join("\n");
}

/** The targets as a Markdown table. */
export function targetsTable(f: BenchFigures): string {
  return targetsMarkdown(targets(f));
}

/** A horizontal bar chart of the read runs' requests per second. */
export function chartSvg(f: BenchFigures): string {
  // Each part beside the baseline it is judged against: (b) beside its floor, (d) beside (e).
  const parts: { title: string; bars: [string, number, string][] }[] = [
    {
      title: `reads per second (wrk, ${f.connections} connections, ${f.seconds} s each)`,
      bars: [
        ["(a) bare Hono hello", f.hello.requestsPerSecond, "#9aa5b1"],
        ["(b)'s floor (bare Deno.serve)", f.floor.requestsPerSecond, "#9aa5b1"],
        ["(b) counters, 10,000 users", f.countersLight.requestsPerSecond, "#2f80ed"],
        ["(b) counters, 10,000 unread", f.countersHeavy.requestsPerSecond, "#2f80ed"],
        ["(c) naive count", f.naiveLight.requestsPerSecond, "#eb5757"],
        ["(c) naive, 10,000 unread", f.naiveHeavy.requestsPerSecond, "#eb5757"],
      ],
    },
    {
      title: "sends per second (wrk, 32 connections)",
      bars: [
        ["(e) the same sends, no saga", f.single.requestsPerSecond, "#9aa5b1"],
        ["(d) through the saga", f.sagaPerSecond, "#2f80ed"],
      ],
    },
  ];
  const width = 460, left = 230, rowHeight = 34, titleHeight = 30;
  let y = 0;
  const rows: string[] = [];
  for (const part of parts) {
    const max = Math.max(...part.bars.map(([, v]) => v), 1);
    rows.push(`<text x="${left}" y="${y + 18}" font-weight="bold">${part.title}</text>`);
    y += titleHeight;
    for (const [label, value, color] of part.bars) {
      const w = Math.max(1, (value / max) * width);
      rows.push(
        `<text x="${left - 8}" y="${y + 17}" text-anchor="end">${label}</text>` +
          `<rect x="${left}" y="${y}" width="${w.toFixed(1)}" height="24" fill="${color}"/>` +
          `<text x="${left + w + 6}" y="${y + 17}">${value.toFixed(0)}</text>`,
      );
      y += rowHeight;
    }
    y += 16;
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${left + width + 90}" height="${y}" ` +
    `font-family="sans-serif" font-size="13">` + rows.join("") + `</svg>\n`;
}

/** How the group figures were measured, for docs/performance.md. */
export function groupMethod(g: GroupFigures): string {
  return `Groups (issue 14): (g1) the bench process sends to a 2-member group and then to a ${
    count(g.large.members)
  }-member group (from 1,000 of its members) at the same offered load, ${
    g.rate.toFixed(0)
  } sends/s each${
    g.ceiling
      ? ` (a quarter of the ${
        g.ceiling.toFixed(0)
      }/s the 2-member group's saga does with 16 wrk connections sending as fast as they go)`
      : ""
  } evenly spaced whatever the answers take (an open loop): the latencies from both groups sent to
at once, in one window of the machine, for the run's duration; the rows from each group alone;
send → committed is the saga's own \`created_at\` → \`finished_at\`; the rows per message are the
counters database's inserts, updates and deletes (\`pg_stat_user_tables\`) over the run divided by
the sends.
(g2) wrk reads \`GET /api/counters\` for ${
    count(g.readers)
  } users each in ${g.conversations} groups of ${
    count(g.groupSize)
  } members (each group has three messages, one mentioning \`all\`, one a member), then for ${
    count(g.readers)
  } users each with ${g.conversations} dialogs of 1–9 unread, with the same connections and duration.
(g3) ${
    count(g.streams.streams)
  } members of the large group hold \`GET /api/counters/stream\` open on the one counters instance
(fetch readers in the bench process) while other members send at ${
    g.streams.rate.toFixed(0)
  }/s; a sample is the time from a message's commit in dialogs to the first \`counters\` event of a
stream whose count includes it.`;
}

/** docs/performance.md for this run; `scaling` is the hand-written section kept between runs. */
export function performanceDoc(f: BenchFigures, command: string, scaling: string): string {
  return `# Performance

Measured by \`${command}\` on ${f.machine}. Every figure below comes from one run: the machine is
noisy, so the targets are ratios between runs made side by side, never absolute numbers. wrk (Debian's
package) drives the reads with 2 threads and ${f.connections} connections for ${f.seconds} s per run,
each request carrying a real JWT of a different user; wrk also drives the sends, from 2,000 users, as
fast as 32 connections go and then at half that rate as steady arrivals (each connection pauses a
random time between sends, so the offered load has no bursts); right before the saga's full-speed
run, the same wrk load sends to (e), \`bench/single_send_server.ts\`: the same route answered by one
Deno + Hono process that verifies each token once, validates the body with zod and commits the
message, the counter and its version in one pipelined transaction before answering 202. pgbench
measures Postgres' ceiling, for information. The services run as separate processes with \`LOG_LEVEL=warn\`, the
load generator shares the machine's 2 cores with them.
${f.groups ? `\n${groupMethod(f.groups)}\n` : ""}${
    f.streams ? `\n${streamsMethod(f.streams)}\n` : ""
  }
![requests per second](performance.svg)

## Figures

${figuresTable(f)}

## Targets

${targetsTable(f)}

${scaling}
`;
}

// (f), issue 15: ten thousand live streams. Each figure stands beside the same figure of the bare
// floor (bench/streams_floor_server.ts), measured in the same run the same way.

/** RSS per stream of a side: its first round's RSS with N open over its fresh RSS, in KB. */
export function rssKbPerStream(side: StreamsSide): number {
  const first = side.churn.rounds[0];
  if (!first) return NaN;
  return (first.open.rssMb - side.churn.before.rssMb) * 1024 / side.churn.streams;
}

/** The most RSS a side had with its N streams open: any churn round's or the load's. */
export function peakRssMb(side: StreamsSide): number {
  return Math.max(
    ...side.churn.rounds.map((r) => r.open.rssMb),
    side.load.idle.rssMb,
    side.load.loaded.rssMb,
  );
}

/** A side's memory after each churn round over its memory before the first, the worst of them. */
export function churnRatios(side: StreamsSide): { rss: number[]; heap: number[] } {
  const { before, rounds } = side.churn;
  return {
    rss: rounds.map((r) => r.after.rssMb / before.rssMb),
    heap: rounds.map((r) => r.after.heapMb / before.heapMb),
  };
}

const ratios = (list: number[]) => list.map((r) => `${r.toFixed(2)}×`).join(", ");

/** Issue 15's targets of (f), each beside the floor's figure. */
export function streamTargets(s: StreamsFigures): Target[] {
  const { counters: c, floor: fl } = s;
  const n = c.load.streams;
  const cChurn = churnRatios(c), fChurn = churnRatios(fl);
  const release = Math.max(...c.load.releaseMs);
  return [
    {
      what: `(f) p99 send → counters event ≤ 250 ms, ${
        count(n)
      } streams, ${c.load.sendsPerSecond} sends/s`,
      measured: `${c.load.p99Ms.toFixed(0)} ms (p50 ${
        c.load.p50Ms.toFixed(0)
      } ms; ${c.load.lost} missing, ${c.load.failedSends} failed of ${count(c.load.sent)}${
        c.load.sagaMeanMs === undefined
          ? ""
          : `; the sagas' own send → committed: ${c.load.sagaMeanMs.toFixed(0)} ms on average`
      }${
        c.load.commitToEvent === undefined
          ? ""
          : `; counters commit → event p99 ${c.load.commitToEvent.p99Ms.toFixed(0)} ms over ${
            count(c.load.commitToEvent.samples)
          } sends`
      }); floor push → event p99 ${fl.load.p99Ms.toFixed(0)} ms`,
      met: c.load.p99Ms <= 250 && c.load.lost === 0 && c.load.failedSends === 0 &&
        c.load.sent > 0,
    },
    {
      what: `(f) counters RSS ≤ 300 MB with ${count(n)} streams`,
      measured: `${peakRssMb(c).toFixed(0)} MB (${
        rssKbPerStream(c).toFixed(1)
      } KB/stream); floor: a bare Deno.serve holding ${count(n)} ReadableStreams ${
        peakRssMb(fl).toFixed(0)
      } MB (${rssKbPerStream(fl).toFixed(1)} KB/stream)`,
      met: peakRssMb(c) <= 300,
    },
    {
      what: `(f) heap after each of ${c.churn.rounds.length} rounds of ${
        count(n)
      } connects and disconnects within 10% of before`,
      measured: `${ratios(cChurn.heap)} (${c.churn.before.heapMb.toFixed(0)} MB before)`,
      met: cChurn.heap.length > 0 && cChurn.heap.every((r) => r <= 1.1),
    },
    {
      what: `(f) RSS after each of ${c.churn.rounds.length} rounds of ${
        count(n)
      } connects and disconnects within 10% of before`,
      measured: `${ratios(cChurn.rss)} (${c.churn.before.rssMb.toFixed(0)} MB before); floor ${
        ratios(fChurn.rss)
      } (${fl.churn.before.rssMb.toFixed(0)} MB before)`,
      met: cChurn.rss.length > 0 && cChurn.rss.every((r) => r <= 1.1),
    },
    {
      what: "(f) a closed client's stream released within 1 s",
      measured: `at most ${release.toFixed(0)} ms over ${c.load.releaseMs.length} clients closed ` +
        `one at a time; all ${count(n)} closed at once: ${
          Math.max(...c.churn.rounds.map((r) => r.releasedMs)).toFixed(0)
        } ms at most`,
      met: c.load.releaseMs.length > 0 && release <= 1000,
    },
  ];
}

/** (f)'s figures, counters beside the floor, as a Markdown table. */
export function streamsTable(s: StreamsFigures): string {
  const mb = (x: number) => x.toFixed(0);
  const row = (name: string, side: StreamsSide) => {
    const { churn, load } = side;
    return `| ${name} | ${count(load.streams)} | ${mb(churn.before.rssMb)} | ${
      mb(peakRssMb(side))
    } | ${rssKbPerStream(side).toFixed(1)} | ${load.p50Ms.toFixed(0)} | ${
      load.p99Ms.toFixed(0)
    } | ${load.idleCpuPercent.toFixed(1)} | ${load.cpuMsPerSend.toFixed(2)} | ${
      churn.rounds.map((r) => mb(r.after.rssMb)).join(" / ")
    } | ${churn.rounds.map((r) => mb(r.after.heapMb)).join(" / ")} (${mb(churn.before.heapMb)}) | ${
      Math.max(...load.releaseMs).toFixed(0)
    } |`;
  };
  return [
    `| live streams (${s.counters.load.sendsPerSecond} sends/s for ${s.counters.load.seconds} s) | streams | RSS before MB | RSS open MB | KB/stream | p50 ms | p99 ms | idle CPU % | CPU ms per send | RSS after each round MB | heap after each round MB (before) | release ms |`,
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    row("(f) counters: send → counters event", s.counters),
    row("(f)'s floor: bare Deno.serve, push → event", s.floor),
  ].join("\n");
}

/** How (f) was measured, for docs/performance.md. */
export function streamsMethod(s: StreamsFigures): string {
  const { load, churn } = s.counters;
  return `Live streams (issue 15): (f) the bench process opens ${
    count(load.streams)
  } \`GET /api/counters/stream\` connections (fetch, ${
    count(load.streams)
  } users) on a fresh counters process, closes them and does that ${churn.rounds.length} times
(memory before the first round, with the streams open, and 3 s after each round); then opens them
again, measures the instance's CPU over ${load.idleSeconds} s of heartbeats only, sends through
dialogs at ${load.sendsPerSecond}/s for ${load.seconds} s, each to the next stream's user (a sample
is send → that user's next \`counters\` event; a user sent to once also gives its commit in
counters, the ledger row's time, → the event), and closes ${load.releaseMs.length} clients one at a
time (release: close → the instance's \`counters_live_streams\` one lower). The floor beside it is
a bare \`Deno.serve\` holding one \`ReadableStream\` per request (bench/streams_floor_server.ts),
on a fresh process, measured the same way with \`POST /push/<user>\` in place of a send.`;
}
