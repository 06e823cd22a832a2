/**
 * `deno task chaos`: N dialogs and N counters processes (`--instances`, 2 by default) under a mixed
 * load while faults are injected; then it waits for quiet, checks the invariant in the tables and as
 * every counters instance serves it, prints a table and exits 1 unless every figure that must be 0 is.
 * With `--nats-cluster 3` it runs on a private three-node JetStream cluster (R3 streams) with every
 * fault of issue 12: kill -9 of each instance and of NATS nodes (the stream leader among them), Redis
 * flushed, restarted from an older snapshot and refusing writes, Postgres connections killed, an
 * instance stalled. It starts its own nats-server(s) and redis-server and stops only what it started,
 * also when SIGINT or SIGTERM cuts the run short (it then exits 130 or 143).
 */
import { signToken } from "../shared/auth.ts";
import { waitForPort } from "../testing/processes.ts";
import {
  checkInvariant,
  type CheckResult,
  fuzzInstances,
  type FuzzResult,
  waitForQuiet,
} from "./check.ts";
import { buildFaults } from "./faults.ts";
import { type GroupLoadResult, runGroupLoad } from "./groups.ts";
import { type LoadResult, runLoad } from "./load.ts";
import { type ProbeResult, runProbe } from "./probe.ts";
import {
  type ChaosReport,
  countByLastFault,
  countTimeoutsByFault,
  isOk,
  renderReport,
  type TimedFault,
} from "./report.ts";
import {
  type ChaosWorld,
  instanceUrls,
  planWorld,
  restoreWorld,
  type Servers,
  sleep,
  startServers,
  startServices,
  tearDownOnSignal,
  tearDownWorld,
} from "./world.ts";

/** Options of a chaos run; every one is a command-line flag of the same name. */
export interface ChaosOptions {
  sends: number;
  rate: number;
  users: number;
  concurrency: number;
  seconds: number;
  faultEvery: number;
  quietSeconds: number;
  seed: number;
  /** Random and malformed requests fired at the instances after the load. */
  fuzz: number;
  /** Instances of each service. */
  instances: number;
  /** nats-server processes: 1 is a single server, more a JetStream cluster with every fault. */
  natsCluster: number;
  /** dialogs' SAGA_TIMEOUT_MS; 30 s (the service's default) with one NATS server, else 8 s. */
  sagaTimeoutMs?: number;
  /** Sender/recipient pairs of the read-your-saga probe. */
  probePairs: number;
  /** Members of the big group of the group load (the load's users among them). */
  groupMembers: number;
  /** Group operations (sends, reads, deletes, mutes, leaves and adds) and their rate per second. */
  groupOps: number;
  groupRate: number;
  json?: string;
}

const DEFAULTS: ChaosOptions = {
  sends: 5_000,
  rate: 40,
  users: 200,
  concurrency: 24,
  seconds: 180,
  faultEvery: 6,
  quietSeconds: 120,
  seed: 20261125,
  fuzz: 20_000,
  instances: 2,
  natsCluster: 1,
  probePairs: 4,
  groupMembers: 1_000,
  groupOps: 2_500,
  groupRate: 15,
};

const OPTIONAL = ["json", "sagaTimeoutMs"];

/** Parses `--name value` flags over the defaults; throws on an unknown flag or a bad number. */
export function parseChaosArgs(args: string[]): ChaosOptions {
  const options: ChaosOptions = { ...DEFAULTS };
  for (let i = 0; i < args.length; i += 2) {
    const flag = args[i]!.replace(/^--/, "").replace(/-([a-z])/g, (_, c) => c.toUpperCase());
    const value = args[i + 1];
    if (!(flag in DEFAULTS) && !OPTIONAL.includes(flag)) {
      throw new Error(`unknown option ${args[i]}`);
    }
    if (value === undefined) throw new Error(`option ${args[i]} needs a value`);
    if (flag === "json") options.json = value;
    else {
      const n = Number(value);
      if (!Number.isFinite(n) || n <= 0) {
        throw new Error(`option ${args[i]} needs a positive number`);
      }
      const whole = ["instances", "natsCluster", "probePairs", "groupMembers", "groupOps"];
      if (whole.includes(flag) && !Number.isInteger(n)) {
        throw new Error(`option ${args[i]} needs a whole number`);
      }
      (options as unknown as Record<string, number>)[flag] = n;
    }
  }
  if (options.sagaTimeoutMs !== undefined && options.sagaTimeoutMs < 100) {
    throw new Error("option --saga-timeout-ms needs 100 or more");
  }
  return options;
}

/** Runs the whole chaos scenario and returns its report. */
export async function runChaos(options: ChaosOptions, log = console.log): Promise<ChaosReport> {
  const startedAt = Date.now();
  const world = await planWorld(options);
  const stopListening = tearDownOnSignal(world, log);
  try {
    log(
      `chaos: ${options.sends} sends at ${options.rate}/s from ${options.users} users; ` +
        `${options.instances} instance(s) of each service, ${options.natsCluster} NATS node(s), ` +
        `SAGA_TIMEOUT_MS ${world.sagaTimeoutMs}; logs in ${world.dir}`,
    );
    const servers = await startServers(world);
    await startServices(world, servers, log);
    const run = await driveLoad(world, servers, options, startedAt, log);
    await restoreWorld(world, servers);
    const quiet = await waitForQuiet(world, servers, options.quietSeconds * 1000);
    const fuzz = await fuzzInstances(world, {
      seed: options.seed,
      count: options.fuzz,
      users: run.users.slice(0, 16),
      messageIds: [
        ...[...run.load.accepted.keys()].slice(0, 40),
        ...[...run.groups.accepted.keys()].slice(0, 20),
      ],
      groups: run.groups.groups.map((g) => ({
        id: g.id,
        members: g.active.filter((u) => run.users.slice(0, 16).includes(u)),
      })),
    }, log);
    // Valid sends among the fuzz requests start sagas too; the invariant is checked after them.
    const quietAgain = await waitForQuiet(world, servers, options.quietSeconds * 1000);
    const checked = await checkInvariant(world, {
      users: run.everyone,
      accepted: new Map([...run.load.accepted, ...run.groups.accepted]),
    }, log);
    const report = chaosReport(world, options, {
      startedAt,
      run,
      fuzz,
      checked,
      quiet: quiet && quietAgain,
    }, log);
    log(renderReport(report));
    if (options.json) {
      await Deno.writeTextFile(options.json, JSON.stringify(report, null, 2) + "\n");
    }
    return report;
  } finally {
    await stopListening();
    await tearDownWorld(world);
  }
}

/** What the load phase did: its users, the load's and the probe's results, the faults injected. */
interface LoadRun {
  users: string[];
  /** The load's users and the probe's. */
  everyone: string[];
  load: LoadResult;
  groups: GroupLoadResult;
  probe: ProbeResult;
  faults: Record<string, number>;
  timeline: TimedFault[];
}

/**
 * Drives the load and the read-your-saga probe across the instances for `options.seconds` while
 * injecting a fault every `options.faultEvery` seconds or so; resolves once every fault is over.
 */
async function driveLoad(
  world: ChaosWorld,
  servers: Servers,
  options: ChaosOptions,
  startedAt: number,
  log: (line: string) => void,
): Promise<LoadRun> {
  const users = Array.from({ length: options.users }, () => crypto.randomUUID());
  const probePairs = Array.from(
    { length: options.probePairs },
    () => ({ from: crypto.randomUUID(), to: crypto.randomUUID() }),
  );
  const everyone = [...users, ...probePairs.flatMap((p) => [p.from, p.to])];
  const tokens = new Map(
    await Promise.all(everyone.map(async (u) => [u, await signToken(u, world.secret)] as const)),
  );
  const urls = instanceUrls(world);
  let loading = true;
  const loadDone = runLoad({
    dialogsUrls: urls.dialogs,
    countersUrls: urls.counters,
    users,
    tokens,
    sends: options.sends,
    rate: options.rate,
    readShare: 0.25,
    countShare: 0.25,
    concurrency: options.concurrency,
    seed: options.seed,
    deadline: Date.now() + options.seconds * 1000,
  });
  const groupsDone = runGroupLoad({
    dialogsUrls: urls.dialogs,
    users,
    tokens,
    secret: world.secret,
    groupMembers: options.groupMembers,
    ops: options.groupOps,
    rate: options.groupRate,
    concurrency: Math.max(2, Math.floor(options.concurrency / 2)),
    seed: options.seed,
    deadline: Date.now() + options.seconds * 1000,
  });
  Promise.allSettled([loadDone, groupsDone]).then(() => loading = false);
  const probeDone = runProbe({
    dialogsUrls: urls.dialogs,
    countersUrls: urls.counters,
    pairs: probePairs,
    tokens,
    active: () => loading,
  });

  const injectors = buildFaults({
    dialogs: world.dialogs,
    counters: world.counters,
    nats: servers.cluster ?? servers.natsNodes[0]!,
    redis: servers.redis,
    admin: world.admin,
    databases: Object.values(world.databases),
    stream: world.stream,
    full: world.full,
    natsLinks: world.natsLinks,
    log,
  }, world.locks);
  const faults: Record<string, number> = {};
  const timeline: TimedFault[] = [];
  let turn = 0;
  while (loading) {
    await sleep(options.faultEvery * 1000 * (0.5 + seededFraction(options.seed + turn)));
    if (!loading) break;
    const [kind, inject] = injectors[turn++ % injectors.length]!;
    const done = inject().catch((err) => log(`chaos: fault ${kind} failed: ${err.message}`));
    faults[kind] = (faults[kind] ?? 0) + 1;
    timeline.push({ at: (Date.now() - startedAt) / 1000, kind });
    await Promise.race([done, sleep(0)]);
  }
  await world.locks.settled();
  const load = await loadDone;
  const groups = await groupsDone;
  const probe = await probeDone;
  for (const example of probe.examples) log(`chaos: read-your-saga violation: ${example}`);
  for (const example of groups.examples) log(`chaos: group load: ${example}`);
  log(
    `chaos: load done (${load.accepted.size} sends accepted, ${load.reads} reads, ` +
      `${load.counterReads} counter reads, ${probe.committed} probe messages; ` +
      `${groups.groups.length} groups, ${groups.accepted.size} group sends accepted, group ops ${
        JSON.stringify(groups.ops)
      }); waiting for quiet`,
  );
  return { users, everyone, load, groups, probe, faults, timeline };
}

/** The run's report; logs which fault came last before each timed-out send and each violation. */
function chaosReport(
  world: ChaosWorld,
  options: ChaosOptions,
  input: {
    startedAt: number;
    run: LoadRun;
    fuzz: FuzzResult;
    checked: CheckResult;
    quiet: boolean;
  },
  log: (line: string) => void,
): ChaosReport {
  const { startedAt, run: { load, groups, probe, faults, timeline }, fuzz, checked, quiet } = input;
  const timedOutAfter = countTimeoutsByFault(
    checked.timedOutSentAt,
    timeline,
    startedAt,
    world.sagaTimeoutMs,
  );
  const violationsAfter = countByLastFault(probe.violationTimes, timeline, startedAt);
  for (const [kind, n] of Object.entries(timedOutAfter)) {
    log(`chaos: ${n} send(s) timed out, sent after (or during the elections of) "${kind}"`);
  }
  for (const [kind, n] of Object.entries(violationsAfter)) {
    log(`chaos: ${n} read-your-saga violation(s) seen after the fault "${kind}"`);
  }
  const report: ChaosReport = {
    seed: options.seed,
    seconds: Math.round((Date.now() - startedAt) / 1000),
    instances: options.instances,
    natsNodes: options.natsCluster,
    sagaTimeoutMs: world.sagaTimeoutMs,
    sendsAccepted: load.accepted.size,
    groupMembers: groups.groups.reduce((n, g) => Math.max(n, g.size), 0),
    groupSendsAccepted: groups.accepted.size,
    groupOps: Object.values(groups.ops).reduce((a, b) => a + b, 0),
    groupRejected: groups.rejected,
    committed: checked.committed,
    failed: checked.failed,
    timedOut: checked.timedOut,
    reads: load.reads,
    counterReads: load.counterReads,
    gaveUp: load.gaveUp + groups.gaveUp,
    rejected: load.rejected,
    faults,
    timeline,
    timedOutAfter,
    violationsAfter,
    drift: checked.drift,
    driftTables: checked.driftTables,
    driftServed: checked.driftServed,
    lost: checked.lost,
    countedTwice: checked.countedTwice,
    probeChecks: probe.checks,
    probeViolations: probe.violations,
    fuzzRequests: fuzz.requests,
    fuzzServerErrors: fuzz.serverErrors,
    fuzzRetryLater: fuzz.retryLater,
    quiet,
    ok: false,
  };
  report.ok = isOk(report);
  return report;
}

function seededFraction(n: number): number {
  const x = Math.sin(n * 12.9898) * 43758.5453;
  return x - Math.floor(x);
}

if (import.meta.main) {
  let options: ChaosOptions;
  try {
    options = parseChaosArgs(Deno.args);
  } catch (err) {
    console.error(`chaos: ${(err as Error).message}`);
    console.error(
      "usage: deno task chaos [--sends N] [--rate N] [--users N] [--concurrency N] [--seconds N] " +
        "[--fault-every S] [--quiet-seconds N] [--seed N] [--fuzz N] [--instances N] " +
        "[--nats-cluster N] [--saga-timeout-ms MS] [--probe-pairs N] [--group-members N] " +
        "[--group-ops N] [--group-rate N] [--json FILE]",
    );
    Deno.exit(2);
  }
  await waitForPort(5432, 1_000).catch(() => {
    console.error("chaos: Postgres must answer on 127.0.0.1:5432 (or set TEST_DATABASE_URL)");
    Deno.exit(2);
  });
  const report = await runChaos(options);
  Deno.exit(report.ok ? 0 : 1);
}
