/**
 * `deno task chaos`: N dialogs and N counters processes (`--instances`, 2 by default) under a mixed
 * load while faults are injected; then it waits for quiet, checks the invariant in the tables and as
 * every counters instance serves it, prints a table and exits 1 unless every figure that must be 0 is.
 * With `--nats-cluster 3` it runs on a private three-node JetStream cluster (R3 streams) with every
 * fault of issue 12: kill -9 of each instance and of NATS nodes (the stream leader among them), Redis
 * flushed, restarted from an older snapshot and refusing writes, Postgres connections killed, an
 * instance stalled. It starts its own nats-server(s) and redis-server and stops only what it started.
 */
import { jetstreamManager } from "@nats-io/jetstream";
import postgres from "postgres";
import { signToken } from "../shared/auth.ts";
import { quoteIdent } from "../shared/db.ts";
import { connectNats, streamNames } from "../shared/jetstream.ts";
import { TIMEOUT_REASON } from "../dialogs/message_store.ts";
import { verifyCounters, verifyServed } from "../scripts/verify.ts";
import { fuzzContext, fuzzRequests } from "../testing/fuzz.ts";
import { type NatsCluster, startNatsCluster } from "../testing/nats_cluster.ts";
import { startPrivateRedis } from "../testing/redis_server.ts";
import { startTcpProxy, type TcpProxy } from "../testing/tcp_proxy.ts";
import { buildFaults, FaultLocks } from "./faults.ts";
import { runLoad } from "./load.ts";
import { runProbe } from "./probe.ts";
import {
  denoProcess,
  findBinary,
  freePort,
  type ManagedProcess,
  managedProcess,
  waitForPort,
} from "../testing/processes.ts";

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
      if (["instances", "natsCluster", "probePairs"].includes(flag) && !Number.isInteger(n)) {
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

const SECRET = "chaos-secret-0123456789abcdef";

/** What a run measured; `ok` when every figure that must be 0 is (see renderReport). */
export interface ChaosReport {
  seed: number;
  seconds: number;
  instances: number;
  natsNodes: number;
  sagaTimeoutMs: number;
  sendsAccepted: number;
  committed: number;
  failed: number;
  /** Failed by the saga timeout: with SAGA_TIMEOUT_MS ≥ 8 s only a fault makes a saga that slow. */
  timedOut: number;
  reads: number;
  counterReads: number;
  gaveUp: number;
  rejected: number;
  faults: Record<string, number>;
  /** Every fault with the second of the run it was injected at. */
  timeline: { at: number; kind: string }[];
  /** Sends failed by the saga timeout, by the last fault injected before each was sent. */
  timedOutAfter: Record<string, number>;
  /** Read-your-saga violations, by the last fault injected before each was seen. */
  violationsAfter: Record<string, number>;
  fuzzRequests: number;
  fuzzServerErrors: number;
  /** Pairs wrong anywhere: in the tables or as served by any instance. */
  drift: number;
  /** Pairs wrong in the counters tables. */
  driftTables: number;
  /** (instance, user, peer) served wrong. */
  driftServed: number;
  lost: number;
  countedTwice: number;
  /** Read-your-saga probe: counter reads right after a commit, and those missing the message. */
  probeChecks: number;
  probeViolations: number;
  quiet: boolean;
  ok: boolean;
}

/** Runs the whole chaos scenario and returns its report. */
export async function runChaos(options: ChaosOptions, log = console.log): Promise<ChaosReport> {
  const startedAt = Date.now();
  const full = options.natsCluster > 1;
  const sagaTimeoutMs = options.sagaTimeoutMs ?? (full ? 8_000 : 30_000);
  const id = crypto.randomUUID().replaceAll("-", "").slice(0, 10);
  const dir = await Deno.makeTempDir({ prefix: `chaos-${id}-` });
  const adminUrl = Deno.env.get("TEST_DATABASE_URL") ??
    "postgres://postgres@127.0.0.1:5432/postgres";
  const dbUrl = (name: string) =>
    Object.assign(new URL(adminUrl), { pathname: `/${name}` }).toString();
  const dialogsDb = `chaos_${id}_dialogs`, countersDb = `chaos_${id}_counters`;
  const prefix = `chaos${id}`, stream = `CHAOS${id}`;
  const faults: Record<string, number> = {};
  const timeline: { at: number; kind: string }[] = [];
  const admin = postgres(adminUrl, { max: 2, onnotice: () => {} });
  const locks = new FaultLocks();
  let cluster: NatsCluster | undefined;
  let single: ManagedProcess | undefined;
  let redis: Awaited<ReturnType<typeof startPrivateRedis>> | undefined;
  const dialogs: ManagedProcess[] = [], counters: ManagedProcess[] = [];
  const natsLinks: { name: string; proxies: TcpProxy[] }[] = [];

  try {
    log(
      `chaos: ${options.sends} sends at ${options.rate}/s from ${options.users} users; ` +
        `${options.instances} instance(s) of each service, ${options.natsCluster} NATS node(s), ` +
        `SAGA_TIMEOUT_MS ${sagaTimeoutMs}; logs in ${dir}`,
    );
    let natsUrl: string;
    if (full) {
      cluster = await startNatsCluster({ dir: `${dir}/nats`, size: options.natsCluster });
      natsUrl = cluster.url;
    } else {
      const natsPort = freePort();
      natsUrl = `nats://127.0.0.1:${natsPort}`;
      single = managedProcess({
        name: "nats-server",
        port: natsPort,
        command: await findBinary("nats-server"),
        args: ["-a", "127.0.0.1", "-p", String(natsPort), "-js", "-sd", `${dir}/nats`],
        logFile: `${dir}/nats.log`,
      });
      await single.start();
    }
    redis = await startPrivateRedis(`${dir}/redis`);
    const common = {
      NATS_URL: natsUrl,
      NATS_STREAM: stream,
      NATS_SUBJECT_PREFIX: prefix,
      // Read by the services once they know it; until then the run scales the streams itself below.
      NATS_STREAM_REPLICAS: String(Math.min(options.natsCluster, 3)),
      JWT_SECRET: SECRET,
      LOG_LEVEL: "warn",
    };
    // On a cluster, the first instance of each service reaches NATS through proxies, one per node,
    // so that its connection can be dropped while every server stays up.
    const natsUrlOf = (name: string, n: number) => {
      if (!cluster || n !== 1) return natsUrl;
      const proxies = cluster.nodes.map((node) =>
        startTcpProxy({ hostname: "127.0.0.1", port: node.port })
      );
      natsLinks.push({ name, proxies });
      return proxies.map((p) => `nats://127.0.0.1:${p.port}`).join(",");
    };
    const service = (kind: "dialogs" | "counters", n: number): ManagedProcess =>
      denoProcess({
        name: `${kind}-${n}`,
        script: `${kind}/main.ts`,
        env: kind === "dialogs"
          ? {
            ...common,
            NATS_URL: natsUrlOf(`${kind}-${n}`, n),
            DATABASE_URL: dbUrl(dialogsDb),
            SAGA_TIMEOUT_MS: String(sagaTimeoutMs),
          }
          : {
            ...common,
            NATS_URL: natsUrlOf(`${kind}-${n}`, n),
            DATABASE_URL: dbUrl(countersDb),
            REDIS_URL: redis!.url,
            REDIS_KEY_PREFIX: `${prefix}:`,
            // Off: a repair would hide the drift this run exists to find.
            RECONCILE_INTERVAL_MS: "0",
          },
        logFile: `${dir}/${kind}-${n}.log`,
        readyPath: "/health/live",
      });
    for (let n = 1; n <= options.instances; n++) {
      dialogs.push(service("dialogs", n));
      counters.push(service("counters", n));
    }
    // One first, so that the databases are created and migrated once; then the rest.
    await dialogs[0]!.start();
    await counters[0]!.start();
    await Promise.all([...dialogs, ...counters].map((p) => p.start()));
    if (cluster) await replicate(natsUrl, stream, prefix, Math.min(options.natsCluster, 3), log);

    const users = Array.from({ length: options.users }, () => crypto.randomUUID());
    const probePairs = Array.from(
      { length: options.probePairs },
      () => ({ from: crypto.randomUUID(), to: crypto.randomUUID() }),
    );
    const everyone = [...users, ...probePairs.flatMap((p) => [p.from, p.to])];
    const tokens = new Map(
      await Promise.all(everyone.map(async (u) => [u, await signToken(u, SECRET)] as const)),
    );
    const dialogsUrls = dialogs.map((d) => `http://127.0.0.1:${d.port}`);
    const countersUrls = counters.map((c) => `http://127.0.0.1:${c.port}`);
    log(`chaos: ${[...dialogs, ...counters].map((p) => `${p.name} :${p.port}`).join(", ")}`);
    const deadline = Date.now() + options.seconds * 1000;
    let loading = true;
    const loadDone = runLoad({
      dialogsUrls,
      countersUrls,
      users,
      tokens,
      sends: options.sends,
      rate: options.rate,
      readShare: 0.25,
      countShare: 0.25,
      concurrency: options.concurrency,
      seed: options.seed,
      deadline,
    }).finally(() => loading = false);
    const probeDone = runProbe({
      dialogsUrls,
      countersUrls,
      pairs: probePairs,
      tokens,
      active: () => loading,
    });

    const injectors = buildFaults({
      dialogs,
      counters,
      nats: cluster ?? single!,
      redis,
      admin,
      databases: [dialogsDb, countersDb],
      stream,
      full,
      natsLinks,
      log,
    }, locks);
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
    await locks.settled();
    const load = await loadDone;
    const probe = await probeDone;
    for (const example of probe.examples) log(`chaos: read-your-saga violation: ${example}`);
    log(
      `chaos: load done (${load.accepted.size} sends accepted, ${load.reads} reads, ` +
        `${load.counterReads} counter reads, ${probe.committed} probe messages); waiting for quiet`,
    );

    const servers = cluster ? cluster.nodes : [single!];
    for (const p of [...servers, redis, ...dialogs, ...counters]) await p.start();
    await cluster?.healthy();
    await redis.acceptWrites();
    for (const link of natsLinks) for (const p of link.proxies) await p.restore();
    const quiet = await waitForQuiet(
      dbUrl(dialogsDb),
      dbUrl(countersDb),
      natsUrl,
      { stream, prefix },
      options.quietSeconds * 1000,
    );

    const fuzz = await fireFuzz(options, {
      bases: { dialogs: dialogsUrls, counters: countersUrls },
      users: users.slice(0, 16),
      messageIds: [...load.accepted.keys()].slice(0, 50),
    });
    for (const example of fuzz.examples) log(`chaos: fuzz: ${example.slice(0, 300)}`);
    const crashed = [...dialogs, ...counters].filter((p) => !p.running).map((p) => p.name);
    if (crashed.length) log(`chaos: crashed during fuzzing: ${crashed.join(", ")}`);
    // Valid sends among the fuzz requests start sagas too; the invariant is checked after them.
    const quietAgain = await waitForQuiet(
      dbUrl(dialogsDb),
      dbUrl(countersDb),
      natsUrl,
      { stream, prefix },
      options.quietSeconds * 1000,
    );
    // A process that crashed is counted above; the served check needs every instance up.
    for (const p of [...dialogs, ...counters]) await p.start();
    const report = await check({
      dialogsUrl: dbUrl(dialogsDb),
      countersUrl: dbUrl(countersDb),
      countersBases: countersUrls,
      users: everyone,
      accepted: load.accepted,
      log,
    });
    // Which fault came last before a figure: a hint for whoever reads the report, not a verdict.
    const byLastFault = (times: number[]) => {
      const counts: Record<string, number> = {};
      for (const time of times) {
        const at = (time - startedAt) / 1000;
        const kind = timeline.findLast((f) => f.at <= at)?.kind ?? "no fault yet";
        counts[kind] = (counts[kind] ?? 0) + 1;
      }
      return counts;
    };
    const timedOutAfter = byLastFault(report.timedOutSentAt);
    const violationsAfter = byLastFault(probe.violationTimes);
    for (const [kind, n] of Object.entries(timedOutAfter)) {
      log(`chaos: ${n} send(s) timed out, sent after the fault "${kind}"`);
    }
    for (const [kind, n] of Object.entries(violationsAfter)) {
      log(`chaos: ${n} read-your-saga violation(s) seen after the fault "${kind}"`);
    }
    const result: ChaosReport = {
      seed: options.seed,
      seconds: Math.round((Date.now() - startedAt) / 1000),
      instances: options.instances,
      natsNodes: options.natsCluster,
      sagaTimeoutMs,
      sendsAccepted: load.accepted.size,
      committed: report.committed,
      failed: report.failed,
      timedOut: report.timedOut,
      reads: load.reads,
      counterReads: load.counterReads,
      gaveUp: load.gaveUp,
      rejected: load.rejected,
      faults,
      timeline,
      timedOutAfter,
      violationsAfter,
      drift: report.drift,
      driftTables: report.driftTables,
      driftServed: report.driftServed,
      lost: report.lost,
      countedTwice: report.countedTwice,
      probeChecks: probe.checks,
      probeViolations: probe.violations,
      fuzzRequests: fuzz.requests,
      fuzzServerErrors: fuzz.serverErrors + crashed.length,
      quiet: quiet && quietAgain,
      ok: false,
    };
    result.ok = isOk(result);
    log(renderReport(result));
    if (options.json) {
      await Deno.writeTextFile(options.json, JSON.stringify(result, null, 2) + "\n");
    }
    return result;
  } finally {
    locks.resumeAll();
    for (const link of natsLinks) for (const p of link.proxies) await p.close().catch(() => {});
    await Promise.all([...dialogs, ...counters].map((p) => p.terminate().catch(() => {})));
    await Promise.all(
      [single?.kill(), cluster?.stop(), redis?.kill()].map((p) => p?.catch(() => {})),
    );
    for (const db of [dialogsDb, countersDb]) {
      await admin.unsafe(`drop database if exists ${quoteIdent(db)} with (force)`).catch(() => {});
    }
    await admin.end();
    if (!Deno.env.get("CHAOS_KEEP_LOGS")) {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  }
}

/** Every figure that must be 0 is, quiet was reached and nothing crashed. */
export function isOk(r: ChaosReport): boolean {
  return r.quiet && r.drift === 0 && r.driftTables === 0 && r.driftServed === 0 && r.lost === 0 &&
    r.countedTwice === 0 && r.probeViolations === 0 && r.timedOut === 0 &&
    r.fuzzServerErrors === 0;
}

/**
 * Makes the saga and dead-letter streams `replicas`-way (R3 on a cluster) and waits until every
 * consumer is too. Services that read NATS_STREAM_REPLICAS create them so; this covers those that don't.
 */
async function replicate(
  natsUrl: string,
  stream: string,
  prefix: string,
  replicas: number,
  log: (line: string) => void,
): Promise<void> {
  const nc = await connectNats(natsUrl, "chaos-replicate");
  try {
    const jsm = await jetstreamManager(nc);
    const names = streamNames(stream, prefix);
    for (const name of [names.stream, names.deadLetterStream]) {
      const info = await jsm.streams.info(name).catch(() => undefined);
      if (!info) continue;
      if (info.config.num_replicas !== replicas) {
        await jsm.streams.update(name, { num_replicas: replicas });
      }
      for await (const c of jsm.consumers.list(name)) {
        if ((c.config.num_replicas ?? 0) !== 0 && c.config.num_replicas !== replicas) {
          await jsm.consumers.update(name, c.name, { num_replicas: replicas });
        }
      }
    }
    // Scaling up takes an election; report the settled state.
    const deadline = Date.now() + 15_000;
    let info = await jsm.streams.info(names.stream);
    while (!info.cluster?.leader && Date.now() < deadline) {
      await sleep(250);
      info = await jsm.streams.info(names.stream);
    }
    const consumers: string[] = [];
    for await (const c of jsm.consumers.list(names.stream)) {
      consumers.push(
        `${c.name} (leader ${c.cluster?.leader}, ${c.cluster?.replicas?.length} peers)`,
      );
    }
    log(
      `chaos: stream ${names.stream} R${info.config.num_replicas} (leader ${info.cluster?.leader}, ` +
        `${info.cluster?.replicas?.length} peers); consumers ${consumers.join(", ")}`,
    );
  } finally {
    await nc.close();
  }
}

/** Waits until no send is pending, both outboxes are empty and every consumer has acked everything. */
async function waitForQuiet(
  dialogsUrl: string,
  countersUrl: string,
  natsUrl: string,
  names: { stream: string; prefix: string },
  timeoutMs: number,
): Promise<boolean> {
  const d = postgres(dialogsUrl, { max: 1, onnotice: () => {} });
  const c = postgres(countersUrl, { max: 1, onnotice: () => {} });
  const nc = await connectNats(natsUrl, "chaos-quiet");
  try {
    const jsm = await jetstreamManager(nc);
    const deadline = Date.now() + timeoutMs;
    let quietChecks = 0;
    while (Date.now() < deadline) {
      try {
        const [pending] = await d`select count(*)::int as n from messages where status = 'pending'`;
        const [dOut] = await d`select count(*)::int as n from outbox where sent_at is null`;
        const [cOut] = await c`select count(*)::int as n from outbox where sent_at is null`;
        let busy = pending!.n + dOut!.n + cOut!.n;
        // Whatever the durables are named: every consumer of the stream must be done.
        let consumers = 0;
        for await (const info of jsm.consumers.list(names.stream)) {
          consumers++;
          busy += info.num_pending + info.num_ack_pending;
        }
        if (consumers < 2) busy++;
        quietChecks = busy === 0 ? quietChecks + 1 : 0;
        if (quietChecks >= 3) return true;
      } catch {
        quietChecks = 0;
      }
      await sleep(500);
    }
    return false;
  } finally {
    await nc.close();
    await d.end();
    await c.end();
  }
}

/** Compares every counter, in Postgres and as served by every instance, with the truth. */
async function check(input: {
  dialogsUrl: string;
  countersUrl: string;
  countersBases: string[];
  users: string[];
  accepted: Map<string, { from: string; to: string }>;
  log: (line: string) => void;
}) {
  const d = postgres(input.dialogsUrl, { max: 1, onnotice: () => {} });
  try {
    const rows = await d<
      { id: string; status: string; reason: string | null; createdAt: Date }[]
    >`select id, status, failure_reason as reason, created_at as "createdAt" from messages`;
    const status = new Map(rows.map((r) => [r.id, r]));
    let committed = 0, failed = 0, lost = 0;
    const timedOutSentAt: number[] = [];
    for (const id of input.accepted.keys()) {
      const s = status.get(id);
      if (s?.status === "committed") committed++;
      else if (s?.status === "failed") {
        failed++;
        if (s.reason === TIMEOUT_REASON) timedOutSentAt.push(s.createdAt.getTime());
      } else lost++;
    }
    const { drift: stored, truth } = await verifyCounters(input.dialogsUrl, input.countersUrl);
    const served = await verifyServed({
      instances: input.countersBases,
      secret: SECRET,
      truth,
      users: [...input.users, ...truth.map((t) => t.userId)],
      concurrency: 8,
    });
    for (const x of served.slice(0, 5)) {
      input.log(
        `chaos: ${x.instance} serves ${x.served} to ${x.userId} for ${x.peerId}, truth ${x.expected}`,
      );
    }
    const pair = (x: { userId: string; peerId: string }) => `${x.userId}/${x.peerId}`;
    const bad = new Set([...stored.map(pair), ...served.map(pair)]);
    const twice = new Set([
      ...stored.filter((x) => x.actual > x.expected).map(pair),
      ...served.filter((x) => x.served > x.expected).map(pair),
    ]);
    return {
      committed,
      failed,
      timedOut: timedOutSentAt.length,
      timedOutSentAt,
      lost,
      drift: bad.size,
      driftTables: stored.length,
      driftServed: served.length,
      countedTwice: twice.size,
    };
  } finally {
    await d.end();
  }
}

/** Fires `options.fuzz` fuzz requests at the instances, 16 at a time; counts 5xx answers. */
async function fireFuzz(
  options: ChaosOptions,
  input: { bases: Record<"dialogs" | "counters", string[]>; users: string[]; messageIds: string[] },
) {
  const ctx = await fuzzContext(SECRET, input.users, input.messageIds);
  const requests = fuzzRequests(options.seed, options.fuzz, ctx);
  let serverErrors = 0, next = 0;
  const examples: string[] = [];
  const note = (what: string) => {
    serverErrors++;
    if (examples.length < 5) examples.push(what);
  };
  await Promise.all(Array.from({ length: 16 }, async () => {
    for (let i = next++; i < requests.length; i = next++) {
      const req = requests[i]!;
      const bases = input.bases[req.service];
      try {
        const res = await fetch(`${bases[i % bases.length]}${req.path}`, {
          method: req.method,
          headers: req.headers,
          body: req.body as BodyInit | undefined,
          signal: AbortSignal.timeout(10_000),
        });
        // A live stream's body never ends: only a 5xx body is read, for the report.
        if (res.status >= 500) {
          note(`${req.method} ${req.path} answered ${res.status}: ${await res.text()}`);
        } else await res.body?.cancel();
      } catch (err) {
        note(`${req.method} ${req.path} got no answer: ${err}`); // no answer at all
      }
    }
  }));
  return { requests: requests.length, serverErrors, examples };
}

/** The report as a table. */
export function renderReport(r: ChaosReport): string {
  const rows: [string, string | number][] = [
    ["instances of each service", r.instances],
    ["NATS nodes", r.natsNodes],
    ["SAGA_TIMEOUT_MS", r.sagaTimeoutMs],
    ["sends accepted (202)", r.sendsAccepted],
    ["committed", r.committed],
    ["failed (refused or timed out)", r.failed],
    ["reads (mark read)", r.reads],
    ["counter reads (GET /api/counters)", r.counterReads],
    ["requests given up after retries", r.gaveUp],
    ["requests rejected (4xx)", r.rejected],
    ...Object.entries(r.faults).map(([k, v]) => [`fault: ${k}`, v] as [string, number]),
    ["fuzz requests (random and malformed)", r.fuzzRequests],
    ["fuzz answers 5xx or crashed processes", r.fuzzServerErrors],
    ["quiet reached", r.quiet ? "yes" : "NO"],
    ["read-your-saga probe reads", r.probeChecks],
    ["read-your-saga violations", r.probeViolations],
    ["failed by the saga timeout (a crash or fault)", r.timedOut],
    ["drift in the tables (pairs)", r.driftTables],
    ["drift as served (instance, pair)", r.driftServed],
    ["drift (pairs wrong in Postgres or as served)", r.drift],
    ["lost (accepted, neither committed nor failed)", r.lost],
    ["counted twice (pairs over the truth)", r.countedTwice],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  return [
    `| ${"what".padEnd(width)} | value |`,
    `| ${"-".repeat(width)} | ----- |`,
    ...rows.map(([k, v]) => `| ${k.padEnd(width)} | ${String(v).padStart(5)} |`),
    `chaos: ${r.ok ? "PASS" : "FAIL"} in ${r.seconds} s (seed ${r.seed})`,
  ].join("\n");
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
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
        "[--nats-cluster N] [--saga-timeout-ms MS] [--probe-pairs N] [--json FILE]",
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
