/**
 * `deno task bench`: measures, in one run on this machine, (a) a bare Hono hello, (b) GET
 * /api/counters for 10,000 users, (c) the naive count over 1,000,000 messages, (d) the write path
 * beside pgbench's ceiling and (g1)–(g3) groups (issue 14); prints the table and writes
 * docs/performance.md and its chart. `--no-groups` leaves the groups out, `--only-groups` measures
 * nothing else (and writes no doc). (f), ten thousand live streams (issue 15), comes last:
 * `--no-streams` leaves it out, `--only-streams` measures nothing else (and writes no doc);
 * `--live-streams`, `--live-rate`, `--live-seconds` and `--live-rounds` change its load.
 */
import { findBinary } from "../testing/processes.ts";
import { GROUP_DEFAULTS, measureGroups } from "./groups.ts";
import { log, measureReads, measureWrites, NO_READS, NO_WRITES, seedUsers } from "./measure.ts";
import {
  type BenchFigures,
  chartSvg,
  figuresTable,
  groupsTable,
  groupTargets,
  performanceDoc,
  streamsTable,
  streamTargets,
  targets,
  targetsMarkdown,
  targetsTable,
} from "./report.ts";
import { measureStreams, STREAMS_DEFAULTS, type StreamsFigures } from "./streams.ts";
import { planWorld, startWorld, tearDownWorld } from "./world.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const KEPT_MARKER = "<!-- Written by hand; deno task bench keeps everything from here on. -->";

interface BenchOptions {
  seconds: number;
  connections: number;
  write: boolean;
  read: boolean;
  doc: boolean;
  groups: boolean;
  /** (g1)'s sends per second, (g3)'s streams and sends per second, the large group's members. */
  groupRate: number | undefined;
  streams: number;
  streamRate: number;
  groupMembers: number;
  /** (f): whether it runs, and its streams, sends per second, seconds and churn rounds. */
  live: boolean;
  liveStreams: number;
  liveRate: number;
  liveSeconds: number;
  liveRounds: number;
}

function parseArgs(args: string[]): BenchOptions {
  const options: BenchOptions = {
    seconds: 10,
    connections: 64,
    write: true,
    read: true,
    doc: true,
    groups: true,
    groupRate: undefined,
    streams: GROUP_DEFAULTS.streams,
    streamRate: GROUP_DEFAULTS.streamRate,
    groupMembers: GROUP_DEFAULTS.members,
    live: true,
    liveStreams: STREAMS_DEFAULTS.streams,
    liveRate: STREAMS_DEFAULTS.sendsPerSecond,
    liveSeconds: STREAMS_DEFAULTS.seconds,
    liveRounds: STREAMS_DEFAULTS.rounds,
  };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--seconds") options.seconds = Number(args[++i]);
    else if (a === "--connections") options.connections = Number(args[++i]);
    else if (a === "--no-write") options.write = false;
    else if (a === "--no-read") options.read = false;
    else if (a === "--no-doc") options.doc = false;
    else if (a === "--no-groups") options.groups = false;
    else if (a === "--only-groups") {
      options.read = false;
      options.write = false;
      options.live = false;
    } else if (a === "--group-rate") options.groupRate = Number(args[++i]);
    else if (a === "--streams") options.streams = Number(args[++i]);
    else if (a === "--stream-rate") options.streamRate = Number(args[++i]);
    else if (a === "--group-members") options.groupMembers = Number(args[++i]);
    else if (a === "--no-streams") options.live = false;
    else if (a === "--only-streams") {
      options.read = false;
      options.write = false;
      options.groups = false;
    } else if (a === "--live-streams") options.liveStreams = Number(args[++i]);
    else if (a === "--live-rate") options.liveRate = Number(args[++i]);
    else if (a === "--live-seconds") options.liveSeconds = Number(args[++i]);
    else if (a === "--live-rounds") options.liveRounds = Number(args[++i]);
    else throw new Error(`unknown option ${a}`);
  }
  const numbers = [
    options.seconds,
    options.connections,
    options.groupRate ?? 1,
    options.streamRate,
    options.liveStreams,
    options.liveRate,
    options.liveSeconds,
    options.liveRounds,
  ];
  if (!numbers.every((n) => n > 0)) throw new Error("numbers must be positive");
  if (!(options.groupMembers > options.streams + 1 && options.streams > 0)) {
    throw new Error("--group-members must exceed --streams + 1");
  }
  return options;
}

async function machine(): Promise<string> {
  const cpu = (await Deno.readTextFile("/proc/cpuinfo")).match(/model name\s*:\s*(.+)/)?.[1] ??
    "unknown CPU";
  const mem = Number((await Deno.readTextFile("/proc/meminfo")).match(/MemTotal:\s+(\d+)/)?.[1]);
  return `${navigator.hardwareConcurrency} cores (${cpu.trim()}), ${
    Math.round(mem / 1024 / 1024)
  } GiB, Deno ${Deno.version.deno}`;
}

/** Rewrites docs/performance.md and its chart with `figures`, keeping the hand-written part. */
async function writePerformanceDoc(figures: BenchFigures): Promise<void> {
  const docPath = `${ROOT}docs/performance.md`;
  const existing = await Deno.readTextFile(docPath).catch(() => "");
  // Everything from the marker on is written by hand and kept between runs.
  const kept = existing.includes(KEPT_MARKER)
    ? existing.slice(existing.indexOf(KEPT_MARKER)).trimEnd()
    : `${KEPT_MARKER}\n\n## Scaling\n\n(to be written)`;
  await Deno.writeTextFile(docPath, performanceDoc(figures, "deno task bench", kept));
  await Deno.writeTextFile(`${ROOT}docs/performance.svg`, chartSvg(figures));
  // Written the way `deno fmt --check` (CI) wants them.
  await new Deno.Command(Deno.execPath(), {
    args: ["fmt", "-q", docPath, `${ROOT}docs/performance.svg`],
  }).output();
  log("wrote docs/performance.md and docs/performance.svg");
}

/** One run: plan and start its world, seed, measure, print the tables, write the doc, tear down. */
async function main() {
  const options = parseArgs(Deno.args);
  const others = options.read || options.write;
  if (others || options.groups) {
    await findBinary("wrk");
    await findBinary("pgbench");
  }
  const world = await planWorld();
  // Stopped from outside (Ctrl-C, timeout), the run still removes its processes and databases;
  // the measurements, failing as their processes go, tear down the same once.
  let down: Promise<void> | undefined;
  const tearDown = () => down ??= tearDownWorld(world);
  const stop = () => {
    log("stopped; tearing down");
    tearDown().finally(() => Deno.exit(130));
  };
  for (const signal of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(signal, stop);
  try {
    // (f) alone needs only dialogs: it starts its own counters and floor.
    if (others || options.groups) await startWorld(world);
    else await world.dialogs.start();
    const seeded = others ? await seedUsers(world) : undefined;
    const reads = options.read ? await measureReads(world, options, seeded!) : NO_READS;
    const writes = options.write ? await measureWrites(world, options, seeded!) : NO_WRITES;
    await seeded?.dSql.end();
    await seeded?.cSql.end();
    const groups = options.groups
      ? await measureGroups(world, {
        seconds: options.seconds,
        connections: options.connections,
        rate: options.groupRate,
        members: options.groupMembers,
        streams: options.streams,
        streamRate: options.streamRate,
      })
      : undefined;
    // (f) on a counters process of its own, with nothing else running on the world's counters.
    let streams: StreamsFigures | undefined;
    if (options.live) {
      await world.counters.terminate();
      streams = await measureStreams(world, {
        streams: options.liveStreams,
        rounds: options.liveRounds,
        sendsPerSecond: options.liveRate,
        seconds: options.liveSeconds,
      }, log);
    }

    const { countersRssMb, ...readRuns } = reads;
    const { dialogsRssMb, countersRssMb: countersRssWrite, ...writeFigures } = writes;
    const figures: BenchFigures = {
      machine: await machine(),
      connections: options.connections,
      seconds: options.seconds,
      ...readRuns,
      ...writeFigures,
      rssMb: { counters: Math.max(countersRssMb, countersRssWrite), dialogs: dialogsRssMb },
      ...(groups ? { groups } : {}),
      ...(streams ? { streams } : {}),
    };
    const alone = [
      ...(groups ? groupTargets(groups) : []),
      ...(streams ? streamTargets(streams) : []),
    ];
    const measured = others ? targets(figures) : alone;
    console.log(
      others ? figuresTable(figures) : [
        ...(groups ? [groupsTable(groups)] : []),
        ...(streams ? [streamsTable(streams)] : []),
      ].join("\n\n"),
    );
    console.log();
    console.log(others ? targetsTable(figures) : targetsMarkdown(measured));
    // A run without any part would leave docs/performance.md without some of its figures.
    if (options.doc && options.write && options.read && groups && streams) {
      await writePerformanceDoc(figures);
    }
    const missed = measured.filter((t) => !t.met).length;
    log(`${missed} target(s) missed; logs in ${world.logs}`);
  } finally {
    await tearDown();
    for (const signal of ["SIGINT", "SIGTERM"] as const) Deno.removeSignalListener(signal, stop);
  }
}

if (import.meta.main) {
  try {
    await main();
  } catch (err) {
    console.error(`bench: ${(err as Error).message}`);
    Deno.exit(1);
  }
}
