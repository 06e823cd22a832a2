/**
 * Bench (f), live streams (issue 15): many concurrent `GET /api/counters/stream` connections on one
 * counters instance, opened by a small client of its own (fetch, and a reader that splits
 * server-sent blocks). Each side below runs on a fresh process, first the floor, then counters:
 *
 * - Churn: rounds of N connects and disconnects; memory with N open (per stream) and after each
 *   round against before the first; how long the instance took to release all N.
 * - Load: with N streams open, CPU while idle (heartbeats only), then sends to users among them at
 *   a fixed rate: send → `counters` event p50/p99 and RSS; then clients closed one at a time, each
 *   timed until the instance counts its stream gone.
 * - The floor (bench/streams_floor_server.ts): a bare `Deno.serve` holding one `ReadableStream`
 *   per request, measured the same way, with an event pushed by `POST /push/<user>` in place of a
 *   send: what the runtime costs before any counters code.
 *
 * `measureStreams()` is what `deno task bench` calls; run alone it starts its own world:
 * `deno run --allow-all bench/streams.ts [--streams 10000] [--rounds 3] [--rate 100] [--seconds 20]
 * [--no-floor] [--counters-flag --cpu-prof ...]` (raise `ulimit -n` first, as `deno task bench`
 * does). `--counters-flag` passes one more Deno flag to the counters process, once per flag.
 */
import postgres from "postgres";
import { signToken } from "../shared/auth.ts";
import {
  freePort,
  type ManagedProcess,
  managedProcess,
  SERVICE_V8_FLAGS,
} from "../testing/processes.ts";
import { serviceEnv } from "../testing/services_env.ts";
import { type BenchWorld, planWorld, tearDownWorld } from "./world.ts";

const ROOT = new URL("../", import.meta.url).pathname;

/** Most streams being opened at once; more only queue in the kernel's accept backlog. */
const OPENING_AT_ONCE = 200;

/** What the instance's /metrics says of its memory and streams. */
export interface InstanceGauges {
  rssMb: number;
  heapMb: number;
  streams: number;
}

/** Reads the instance's memory and open streams from its /metrics. */
export async function instanceGauges(url: string): Promise<InstanceGauges> {
  const text = await fetch(`${url}/metrics`).then((r) => r.text());
  const value = (name: string) =>
    Number(new RegExp(`^${name} ([0-9.e+]+)$`, "m").exec(text)?.[1] ?? NaN);
  return {
    rssMb: value("process_resident_memory_bytes") / 2 ** 20,
    heapMb: value("process_heap_used_bytes") / 2 ** 20,
    streams: value("counters_live_streams"),
  };
}

/** One open stream of the client: it counts `counters` events and reports each to `onEvent`. */
export interface ClientStream {
  userId: string;
  /** Resolves on the first `counters` event. */
  readonly first: Promise<void>;
  close(): Promise<void>;
}

/** Opens `userId`'s stream and reads it until closed, calling `onEvent` for every event. */
export async function openClientStream(
  countersUrl: string,
  userId: string,
  token: string,
  onEvent: (userId: string, id: number) => void,
): Promise<ClientStream> {
  const res = await fetch(`${countersUrl}/api/counters/stream?access_token=${token}`);
  if (res.status !== 200) throw new Error(`stream refused: ${res.status} ${await res.text()}`);
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let gotFirst = () => {};
  const first = new Promise<void>((resolve) => gotFirst = resolve);
  const reading = (async () => {
    let buffer = "";
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let end: number;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const id = /^id: (\d+)$/m.exec(block)?.[1];
        if (id === undefined) continue; // a heartbeat
        gotFirst();
        onEvent(userId, Number(id));
      }
    }
  })().catch(() => {});
  return {
    userId,
    first,
    async close() {
      await reader.cancel().catch(() => {});
      await reading;
    },
  };
}

/** Opens a stream for each user, at most OPENING_AT_ONCE at a time; resolves when all have sent their first event. */
export async function openMany(
  countersUrl: string,
  secret: string,
  userIds: string[],
  onEvent: (userId: string, id: number) => void = () => {},
): Promise<ClientStream[]> {
  const streams: ClientStream[] = [];
  let next = 0;
  const opener = async () => {
    while (next < userIds.length) {
      const userId = userIds[next++]!;
      const token = await signToken(userId, secret);
      const stream = await openClientStream(countersUrl, userId, token, onEvent);
      await stream.first;
      streams.push(stream);
    }
  };
  await Promise.all(Array.from({ length: OPENING_AT_ONCE }, opener));
  return streams;
}

/** Polls the instance until it holds `streams` open streams; the ms it took (NaN past `timeoutMs`). */
async function untilStreams(url: string, streams: number, timeoutMs: number): Promise<number> {
  const started = performance.now();
  while (performance.now() - started < timeoutMs) {
    if ((await instanceGauges(url)).streams === streams) return performance.now() - started;
    await new Promise((r) => setTimeout(r, 20));
  }
  return NaN;
}

/** Memory with N streams open. */
export interface StreamsMemory {
  streams: number;
  before: InstanceGauges;
  open: InstanceGauges;
  /** (open - before) / N, in KB. */
  rssKbPerStream: number;
  heapKbPerStream: number;
  /** From the clients' close to the instance's gauge at 0, in ms. */
  releasedMs: number;
  /** After the streams closed and the instance settled. */
  after: InstanceGauges;
}

/** Opens N streams, measures, closes them and measures how long their release took. */
export async function measureStreamMemory(
  url: string,
  secret: string,
  n: number,
): Promise<StreamsMemory> {
  const before = await settledGauges(url);
  const streams = await openMany(url, secret, userIds(n));
  await new Promise((r) => setTimeout(r, 1_000));
  const open = await instanceGauges(url);
  const closed = performance.now();
  await Promise.all(streams.map((s) => s.close()));
  const waited = await untilStreams(url, 0, 30_000);
  const releasedMs = Number.isNaN(waited) ? NaN : performance.now() - closed;
  const after = await settledGauges(url);
  return {
    streams: n,
    before,
    open,
    rssKbPerStream: (open.rssMb - before.rssMb) * 1024 / n,
    heapKbPerStream: (open.heapMb - before.heapMb) * 1024 / n,
    releasedMs,
    after,
  };
}

/** The gauges once the instance has been idle a few seconds (its GC has had a chance to run). */
async function settledGauges(url: string): Promise<InstanceGauges> {
  await new Promise((r) => setTimeout(r, 3_000));
  return await instanceGauges(url);
}

/** `n` new user ids. */
function userIds(n: number): string[] {
  return Array.from({ length: n }, () => crypto.randomUUID());
}

/** Rounds of N connects and disconnects: memory before, and after each round. */
export interface ChurnResult {
  streams: number;
  before: InstanceGauges;
  rounds: StreamsMemory[];
  /** The last round's settled RSS over the RSS before, as a ratio (1.1 = 10% more). */
  rssRatio: number;
  heapRatio: number;
}

/** `rounds` rounds of opening and closing `n` streams. */
export async function measureChurn(
  url: string,
  secret: string,
  n: number,
  rounds: number,
): Promise<ChurnResult> {
  const before = await settledGauges(url);
  const results: StreamsMemory[] = [];
  for (let i = 0; i < rounds; i++) results.push(await measureStreamMemory(url, secret, n));
  const last = results.at(-1)!.after;
  return {
    streams: n,
    before,
    rounds: results,
    rssRatio: last.rssMb / before.rssMb,
    heapRatio: last.heapMb / before.heapMb,
  };
}

/** Send → event latencies and what became of the sends. */
export interface Latencies {
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** p50, p99 and max of `values` (ms); NaN for none. */
export function latencies(values: number[]): Latencies {
  const sorted = values.toSorted((a, b) => a - b);
  const at = (q: number) =>
    sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  return { p50Ms: at(0.5), p99Ms: at(0.99), maxMs: sorted.at(-1) ?? NaN };
}

/** The soft limit on open files in a /proc/<pid>/limits text; Infinity when unlimited. */
export function openFilesLimit(limits: string): number {
  const soft = /^Max open files\s+(\S+)/m.exec(limits)?.[1];
  if (soft === undefined) throw new Error("no 'Max open files' line");
  return soft === "unlimited" ? Infinity : Number(soft);
}

/** N streams open, events pushed at a fixed rate to users among them. */
export interface StreamsLoad extends Latencies {
  streams: number;
  sendsPerSecond: number;
  seconds: number;
  sent: number;
  failedSends: number;
  /** Sends whose event did not arrive within 5 s of the last send. */
  lost: number;
  /** With the streams open and idle, then at the end of the load. */
  idle: InstanceGauges;
  loaded: InstanceGauges;
  /** The instance's CPU over `idleSeconds` with heartbeats only, in % of one core. */
  idleCpuPercent: number;
  idleSeconds: number;
  /** The instance's CPU from the first send to the last event, beyond idle, per send (ms). */
  cpuMsPerSend: number;
  /** The whole run's connect phase. */
  openedInMs: number;
  /** Clients closed one at a time: each one's close → the instance counting one stream fewer, ms. */
  releaseMs: number[];
  /** The mean send → committed of the sagas that ended during the load (dialogs' metric), ms. */
  sagaMeanMs?: number;
  /**
   * Counters' commit (its ledger row's time) → the event, for the users sent to once, when the
   * side can tell commit times: the streams' own share of send → event.
   */
  commitToEvent?: Latencies & { samples: number };
}

/** The sum and count of dialogs' send → committed (or failed) histogram, from its /metrics. */
async function sagaTotals(dialogsUrl: string): Promise<{ sum: number; count: number }> {
  const text = await fetch(`${dialogsUrl}/metrics`).then((r) => r.text());
  // Summed over the histogram's labels (one series per outcome).
  const value = (name: string) =>
    [...text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+]+)$`, "gm"))]
      .reduce((sum, m) => sum + Number(m[1]), 0);
  return {
    sum: value("saga_send_to_terminal_seconds_sum"),
    count: value("saga_send_to_terminal_seconds_count"),
  };
}

/** Seconds of CPU the process has used (user + system), from /proc. */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // utime and stime are fields 14 and 15 of stat, 12 and 13 after the command; in 1/100 s.
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Closes `streams` one at a time; for each, the ms until the instance counts one stream fewer. */
async function releaseOneByOne(url: string, streams: ClientStream[]): Promise<number[]> {
  const times: number[] = [];
  for (const stream of streams) {
    const held = (await instanceGauges(url)).streams;
    const closed = performance.now();
    await stream.close();
    const waited = await untilStreams(url, held - 1, 10_000);
    times.push(Number.isNaN(waited) ? NaN : performance.now() - closed);
  }
  return times;
}

/**
 * Opens `n` streams on the instance at `url`, measures its idle CPU, then pushes to them at
 * `sendsPerSecond` with `send` (which resolves false for a failed send); last, closes `released`
 * of them one at a time and the rest at once.
 */
export async function measureStreamsLoad(options: {
  url: string;
  pid: number;
  secret: string;
  streams: number;
  sendsPerSecond: number;
  seconds: number;
  idleSeconds: number;
  released: number;
  send: (to: string) => Promise<boolean>;
  /** dialogs, when the sends go through it: its sagas' mean latency is taken over the load. */
  dialogsUrl?: string;
  /** The commit times (ms since the epoch) of sends to `users` since `since`, by user. */
  commitTimes?: (users: string[], since: Date) => Promise<Map<string, number[]>>;
}): Promise<StreamsLoad> {
  const { url, secret } = options;
  const sentAt = new Map<string, number>();
  const samples: number[] = [];
  /** Each user's sends, and when (ms since the epoch) the event of each arrived. */
  const sendsTo = new Map<string, number>();
  const arrivedAt = new Map<string, number>();
  const onEvent = (userId: string) => {
    const at = sentAt.get(userId);
    if (at === undefined) return;
    sentAt.delete(userId);
    samples.push(performance.now() - at);
    arrivedAt.set(userId, Date.now());
  };
  const users = userIds(options.streams);
  const opening = performance.now();
  const streams = await openMany(url, secret, users, onEvent);
  const openedInMs = performance.now() - opening;
  let releaseMs: number[] = [];
  try {
    await new Promise((r) => setTimeout(r, 2_000));
    const cpuBefore = await cpuSeconds(options.pid);
    const idleFrom = performance.now();
    await new Promise((r) => setTimeout(r, options.idleSeconds * 1_000));
    const idleCpuPercent = (await cpuSeconds(options.pid) - cpuBefore) /
      ((performance.now() - idleFrom) / 1_000) * 100;
    const idle = await instanceGauges(url);

    // Each send goes to the next stream's user, so a user's next event is its send's.
    const total = Math.round(options.sendsPerSecond * options.seconds);
    let failedSends = 0;
    const sends: Promise<void>[] = [];
    const sagasBefore = options.dialogsUrl ? await sagaTotals(options.dialogsUrl) : undefined;
    const since = new Date();
    const cpuAtStart = await cpuSeconds(options.pid);
    const started = performance.now();
    for (let i = 0; i < total; i++) {
      const due = started + i * 1_000 / options.sendsPerSecond;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      const to = users[i % users.length]!;
      sentAt.set(to, performance.now());
      sendsTo.set(to, (sendsTo.get(to) ?? 0) + 1);
      sends.push(
        options.send(to).catch(() => false).then((ok) => {
          if (ok) return;
          failedSends++;
          sentAt.delete(to);
        }),
      );
    }
    await Promise.all(sends);
    const deadline = performance.now() + 5_000;
    while (sentAt.size > 0 && performance.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    const loadCpuSeconds = await cpuSeconds(options.pid) - cpuAtStart;
    const loadSeconds = (performance.now() - started) / 1_000;
    const cpuMsPerSend = (loadCpuSeconds - idleCpuPercent / 100 * loadSeconds) * 1_000 /
      (total - failedSends);
    const sagasAfter = options.dialogsUrl ? await sagaTotals(options.dialogsUrl) : undefined;
    const loaded = await instanceGauges(url);
    const once = [...arrivedAt.keys()].filter((user) => sendsTo.get(user) === 1);
    const commits = options.commitTimes ? await options.commitTimes(once, since) : undefined;
    const commitSamples = once.flatMap((user) => {
      const times = commits?.get(user);
      return times?.length === 1 ? [arrivedAt.get(user)! - times[0]!] : [];
    });
    releaseMs = await releaseOneByOne(url, streams.splice(0, options.released));
    return {
      streams: options.streams,
      sendsPerSecond: options.sendsPerSecond,
      seconds: options.seconds,
      sent: total,
      failedSends,
      ...latencies(samples),
      lost: sentAt.size,
      idle,
      loaded,
      idleCpuPercent,
      idleSeconds: options.idleSeconds,
      cpuMsPerSend,
      openedInMs,
      releaseMs,
      ...(commits
        ? { commitToEvent: { ...latencies(commitSamples), samples: commitSamples.length } }
        : {}),
      ...(sagasBefore && sagasAfter
        ? {
          sagaMeanMs: (sagasAfter.sum - sagasBefore.sum) * 1_000 /
            (sagasAfter.count - sagasBefore.count),
        }
        : {}),
    };
  } finally {
    await Promise.all(streams.map((s) => s.close()));
  }
}

/**
 * Runs `args` (a program and its arguments) with the file-descriptor limit raised to `fdLimit`
 * first (the shell's `ulimit -n`; the hard limit when `fdLimit` is above it).
 */
function withFdLimit(fdLimit: number, args: string[]): { command: string; args: string[] } {
  return {
    command: "sh",
    args: [
      "-c",
      `ulimit -n ${fdLimit} 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$0" "$@"`,
      ...args,
    ],
  };
}

/**
 * A fresh counters process of `world` on a port of its own, with `fdLimit` open files and the
 * Deno `flags` besides the services' (e.g. `--cpu-prof`, `--v8-flags=--trace-gc`).
 */
export function countersWithFdLimit(
  world: BenchWorld,
  fdLimit: number,
  flags: string[] = [],
): ManagedProcess {
  const env = serviceEnv("counters", world.deployment);
  const port = freePort();
  return managedProcess({
    name: "counters-streams",
    port,
    ...withFdLimit(fdLimit, [
      Deno.execPath(),
      "run",
      "--allow-all",
      SERVICE_V8_FLAGS,
      ...flags,
      `${ROOT}counters/main.ts`,
    ]),
    env: { NO_COLOR: "1", ...env, PORT: String(port) },
    logFile: `${world.logs}/counters-streams.log`,
  });
}

/** bench/streams_floor_server.ts with the services' V8 flags and `fdLimit` open files. */
function floorWithFdLimit(world: BenchWorld, fdLimit: number, heartbeatMs: number): ManagedProcess {
  const port = freePort();
  return managedProcess({
    name: "streams-floor",
    port,
    ...withFdLimit(fdLimit, [
      Deno.execPath(),
      "run",
      "--allow-net",
      "--allow-env",
      SERVICE_V8_FLAGS,
      `${ROOT}bench/streams_floor_server.ts`,
    ]),
    env: { NO_COLOR: "1", PORT: String(port), SSE_HEARTBEAT_MS: String(heartbeatMs) },
    logFile: `${world.logs}/streams-floor.log`,
  });
}

/** What one side (counters, or the bare floor) measured. */
export interface StreamsSide {
  churn: ChurnResult;
  load: StreamsLoad;
}

/** Bench (f): N streams on counters and on the bare floor, each on a fresh process. */
export interface StreamsFigures {
  counters: StreamsSide;
  floor: StreamsSide;
}

/** (f)'s defaults: the issue's load. */
export const STREAMS_DEFAULTS = {
  streams: 10_000,
  rounds: 3,
  sendsPerSecond: 100,
  seconds: 20,
  idleSeconds: 10,
  released: 20,
} as const;

/** Options of (f). */
export interface StreamsOptions {
  streams: number;
  rounds: number;
  sendsPerSecond: number;
  seconds: number;
  idleSeconds?: number;
  released?: number;
  /** Whether the floor is measured too (default true). */
  floor?: boolean;
  /** Deno flags for the counters process besides the services' (see countersWithFdLimit). */
  countersFlags?: string[];
}

/** The heartbeat interval counters runs with (its default, the contract's "at least every 15 s"). */
const HEARTBEAT_MS = 15_000;

/**
 * Measures (f) on `world`, whose dialogs must be running: first the floor, then a counters process
 * of its own (stop the world's counters first, or both serve the run's consumer).
 */
export async function measureStreams(
  world: BenchWorld,
  options: StreamsOptions,
  log: (line: string) => void = () => {},
): Promise<StreamsFigures> {
  const { counters, floor } = await measureStreamSides(world, { ...options, floor: true }, log);
  return { counters, floor: floor! };
}

/** measureStreams(), whose floor is left out when `options.floor` is false. */
export async function measureStreamSides(
  world: BenchWorld,
  options: StreamsOptions,
  log: (line: string) => void = () => {},
): Promise<{ counters: StreamsSide; floor?: StreamsSide }> {
  const { streams: n, rounds, sendsPerSecond, seconds } = options;
  const idleSeconds = options.idleSeconds ?? STREAMS_DEFAULTS.idleSeconds;
  const released = Math.min(n, options.released ?? STREAMS_DEFAULTS.released);
  // The bench's own client holds every stream's socket too.
  const limit = openFilesLimit(await Deno.readTextFile("/proc/self/limits"));
  if (limit < n + 1_000) {
    throw new Error(
      `(f) needs ${
        n + 1_000
      } open files, the limit is ${limit}: run \`deno task bench\` (it raises ` +
        `it) or raise \`ulimit -n\` first`,
    );
  }
  const fdLimit = n * 2 + 4_096;

  const side = async (
    process: ManagedProcess,
    send: (url: string) => (to: string) => Promise<boolean>,
    dialogsUrl?: string,
    commitTimes?: (users: string[], since: Date) => Promise<Map<string, number[]>>,
  ): Promise<StreamsSide> => {
    await process.start();
    try {
      const url = `http://127.0.0.1:${process.port}`;
      const churn = await measureChurn(url, world.secret, n, rounds);
      log(`${process.name}: ${streamsLines([], churn, undefined)[0]}`);
      const load = await measureStreamsLoad({
        url,
        pid: await childPid(process.pid!),
        secret: world.secret,
        streams: n,
        sendsPerSecond,
        seconds,
        idleSeconds,
        released,
        send: send(url),
        dialogsUrl,
        commitTimes,
      });
      log(`${process.name}: ${streamsLines([], undefined, load)[0]}`);
      return { churn, load };
    } finally {
      await process.terminate().catch(() => {});
    }
  };

  const floor = options.floor === false
    ? undefined
    : await side(floorWithFdLimit(world, fdLimit, HEARTBEAT_MS), (url) => async (to) => {
      const res = await fetch(`${url}/push/${to}`, { method: "POST" });
      await res.body?.cancel();
      return res.status === 202;
    });
  // As many senders as sends per second, taking turns: each sends one message a second, as people
  // in a chat do; one sender for all would make its own rows the bottleneck of the saga.
  const senders = await Promise.all(
    Array.from(
      { length: Math.max(1, Math.round(sendsPerSecond)) },
      async () => `Bearer ${await signToken(crypto.randomUUID(), world.secret)}`,
    ),
  );
  let turn = 0;
  const dialogsUrl = `http://127.0.0.1:${world.dialogs.port}`;
  const counters = await side(
    countersWithFdLimit(world, fdLimit, options.countersFlags),
    () => async (to) => {
      const auth = senders[turn++ % senders.length]!;
      const res = await fetch(`${dialogsUrl}/api/dialog/${to}/send`, {
        method: "POST",
        headers: { Authorization: auth, "Content-Type": "application/json" },
        body: JSON.stringify({ text: "hi" }),
      });
      await res.body?.cancel();
      return res.status === 202;
    },
    dialogsUrl,
    async (users, since) => {
      const sql = postgres(world.dbUrl(world.dbs.counters), { max: 1, onnotice: () => {} });
      try {
        const rows = await sql<{ userId: string; at: number }[]>`
        select user_id::text as "userId", extract(epoch from created_at)::float8 * 1000 as at
        from ledger where kind = 'send' and created_at >= ${since} and user_id = any(${users}::uuid[])`;
        const byUser = new Map<string, number[]>();
        for (const { userId, at } of rows) byUser.set(userId, [...byUser.get(userId) ?? [], at]);
        return byUser;
      } finally {
        await sql.end();
      }
    },
  );
  return { counters, floor };
}

/**
 * The process `sh` replaced itself with (`exec`): the same pid. Kept as a function so a shell
 * that forks instead is noticed: the pid's command must be deno.
 */
async function childPid(pid: number): Promise<number> {
  const command = await Deno.readTextFile(`/proc/${pid}/comm`);
  if (!command.startsWith("deno")) throw new Error(`pid ${pid} runs ${command.trim()}, not deno`);
  return pid;
}

/** The lines of the results, as the bench logs them while it runs. */
export function streamsLines(
  memory: StreamsMemory[],
  churn: ChurnResult | undefined,
  load: StreamsLoad | undefined,
): string[] {
  const mb = (x: number) => `${x.toFixed(0)} MB`;
  const lines: string[] = [];
  for (const m of memory) {
    lines.push(
      `${m.streams} streams: RSS ${mb(m.before.rssMb)} → ${mb(m.open.rssMb)} ` +
        `(${m.rssKbPerStream.toFixed(1)} KB/stream), heap ${mb(m.before.heapMb)} → ` +
        `${mb(m.open.heapMb)} (${m.heapKbPerStream.toFixed(1)} KB/stream); released ` +
        `${m.releasedMs.toFixed(0)} ms after the clients closed; after: RSS ${
          mb(m.after.rssMb)
        }, ` +
        `heap ${mb(m.after.heapMb)}`,
    );
  }
  if (churn) {
    lines.push(
      `churn, ${churn.rounds.length} rounds of ${churn.streams}: before RSS ${
        mb(churn.before.rssMb)
      }, heap ${mb(churn.before.heapMb)}; open RSS ${
        churn.rounds.map((r) => mb(r.open.rssMb)).join(", ")
      }; after each round RSS ${churn.rounds.map((r) => mb(r.after.rssMb)).join(", ")}, heap ${
        churn.rounds.map((r) => mb(r.after.heapMb)).join(", ")
      }; last/before RSS ${churn.rssRatio.toFixed(2)}, heap ${
        churn.heapRatio.toFixed(2)
      }; released in ${churn.rounds.map((r) => `${r.releasedMs.toFixed(0)} ms`).join(", ")}`,
    );
  }
  if (load) {
    lines.push(
      `${load.streams} streams (opened in ${(load.openedInMs / 1000).toFixed(1)} s), ` +
        `${load.sendsPerSecond} sends/s for ${load.seconds} s: send → event p50 ${
          load.p50Ms.toFixed(0)
        } ms, p99 ${load.p99Ms.toFixed(0)} ms, max ${load.maxMs.toFixed(0)} ms ` +
        `(${load.sent} sent, ${load.failedSends} failed, ${load.lost} events missing); ` +
        `RSS idle ${mb(load.idle.rssMb)}, loaded ${mb(load.loaded.rssMb)}; idle CPU ${
          load.idleCpuPercent.toFixed(1)
        }% of a core over ${load.idleSeconds} s; CPU per send beyond idle ${
          load.cpuMsPerSend.toFixed(2)
        } ms; ${
          load.sagaMeanMs === undefined
            ? ""
            : `mean send → committed ${load.sagaMeanMs.toFixed(0)} ms; `
        }${
          load.commitToEvent === undefined
            ? ""
            : `counters commit → event p50 ${load.commitToEvent.p50Ms.toFixed(0)} ms, p99 ${
              load.commitToEvent.p99Ms.toFixed(0)
            } ms (${load.commitToEvent.samples} sends); `
        }one client closed → released in ${
          load.releaseMs.map((ms) => ms.toFixed(0)).join(", ")
        } ms`,
    );
  }
  return lines;
}

function parseArgs(args: string[]): StreamsOptions {
  const options: StreamsOptions = { ...STREAMS_DEFAULTS };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--streams") options.streams = Number(args[++i]);
    else if (a === "--rounds") options.rounds = Number(args[++i]);
    else if (a === "--rate") options.sendsPerSecond = Number(args[++i]);
    else if (a === "--seconds") options.seconds = Number(args[++i]);
    else if (a === "--no-floor") options.floor = false;
    else if (a === "--counters-flag") (options.countersFlags ??= []).push(args[++i]!);
    else throw new Error(`unknown option ${a}`);
  }
  return options;
}

if (import.meta.main) {
  const options = parseArgs(Deno.args);
  const world = await planWorld();
  try {
    await world.dialogs.start();
    const { counters, floor } = await measureStreamSides(world, options, console.log);
    if (floor) {
      const { streamsTable, streamTargets, targetsMarkdown } = await import("./report.ts");
      console.log(streamsTable({ counters, floor }));
      console.log();
      console.log(targetsMarkdown(streamTargets({ counters, floor })));
    }
  } finally {
    await tearDownWorld(world);
  }
}
