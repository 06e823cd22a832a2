/**
 * Bench (f), live streams: many concurrent `GET /api/counters/stream` connections on one counters
 * instance, opened by a small client of its own (fetch, and a reader that splits server-sent blocks).
 *
 * - Memory per stream: the instance's RSS and heap before and with N streams open.
 * - Churn: rounds of N connects and disconnects; memory after each round against before.
 * - Release: how long after the clients close the instance's `counters_live_streams` reaches 0.
 * - Load: with the streams open, sends to users among them at a fixed rate; send → `counters`
 *   event p50/p99, RSS, and CPU while idle (heartbeats only).
 *
 * `measureStreams()` is what `deno task bench` calls; run alone it starts its own world:
 * `deno run --allow-all bench/streams.ts [--streams 1000,5000] [--rounds 3] [--load 10000]`.
 */
import { signToken } from "../shared/auth.ts";
import { type ManagedProcess, managedProcess, SERVICE_V8_FLAGS } from "../testing/processes.ts";
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

/** Bench (f): N streams open, sends at a fixed rate to users among them. */
export interface StreamsLoad {
  streams: number;
  sendsPerSecond: number;
  seconds: number;
  sent: number;
  failedSends: number;
  /** Send → counters event on the recipient's stream, in ms. */
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Sends whose event did not arrive within 5 s of the last send. */
  lost: number;
  /** With the streams open and idle, then at the end of the load. */
  idle: InstanceGauges;
  loaded: InstanceGauges;
  /** The instance's CPU over `idleSeconds` with heartbeats only, in % of one core. */
  idleCpuPercent: number;
  idleSeconds: number;
  /** The whole run's connect phase. */
  openedInMs: number;
}

/** Seconds of CPU the process has used (user + system), from /proc. */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // utime and stime are fields 14 and 15 of stat, 12 and 13 after the command; in 1/100 s.
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** The value at quantile `q` of sorted `values`. */
function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

/** Opens `n` streams on counters, measures idle CPU, then sends to them through dialogs. */
export async function measureStreamsLoad(options: {
  countersUrl: string;
  countersPid: number;
  dialogsUrl: string;
  secret: string;
  streams: number;
  sendsPerSecond: number;
  seconds: number;
  idleSeconds: number;
}): Promise<StreamsLoad> {
  const { countersUrl, dialogsUrl, secret } = options;
  const sentAt = new Map<string, number>();
  const latencies: number[] = [];
  const onEvent = (userId: string) => {
    const at = sentAt.get(userId);
    if (at === undefined) return;
    sentAt.delete(userId);
    latencies.push(performance.now() - at);
  };
  const users = userIds(options.streams);
  const opening = performance.now();
  const streams = await openMany(countersUrl, secret, users, onEvent);
  const openedInMs = performance.now() - opening;
  try {
    await new Promise((r) => setTimeout(r, 2_000));
    const cpuBefore = await cpuSeconds(options.countersPid);
    const idleFrom = performance.now();
    await new Promise((r) => setTimeout(r, options.idleSeconds * 1_000));
    const idleCpuPercent = (await cpuSeconds(options.countersPid) - cpuBefore) /
      ((performance.now() - idleFrom) / 1_000) * 100;
    const idle = await instanceGauges(countersUrl);

    // One sender; each send goes to the next stream's user, so a user's next event is its send's.
    const sender = crypto.randomUUID();
    const auth = `Bearer ${await signToken(sender, secret)}`;
    const total = Math.round(options.sendsPerSecond * options.seconds);
    let failedSends = 0;
    const sends: Promise<void>[] = [];
    const started = performance.now();
    for (let i = 0; i < total; i++) {
      const due = started + i * 1_000 / options.sendsPerSecond;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      const to = users[i % users.length]!;
      sentAt.set(to, performance.now());
      sends.push(
        fetch(`${dialogsUrl}/api/dialog/${to}/send`, {
          method: "POST",
          headers: { Authorization: auth, "Content-Type": "application/json" },
          body: JSON.stringify({ text: "hi" }),
        }).then(async (res) => {
          await res.body?.cancel();
          if (res.status !== 202) {
            failedSends++;
            sentAt.delete(to);
          }
        }, () => {
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
    const loaded = await instanceGauges(countersUrl);
    const sorted = latencies.toSorted((a, b) => a - b);
    return {
      streams: options.streams,
      sendsPerSecond: options.sendsPerSecond,
      seconds: options.seconds,
      sent: total,
      failedSends,
      p50Ms: quantile(sorted, 0.5),
      p99Ms: quantile(sorted, 0.99),
      maxMs: sorted.at(-1) ?? NaN,
      lost: sentAt.size,
      idle,
      loaded,
      idleCpuPercent,
      idleSeconds: options.idleSeconds,
      openedInMs,
    };
  } finally {
    await Promise.all(streams.map((s) => s.close()));
  }
}

/**
 * A counters process of `world` whose file-descriptor limit is raised to `fdLimit` first (the
 * shell's `ulimit -n`; the hard limit when `fdLimit` is above it), for thousands of streams.
 */
export function countersWithFdLimit(world: BenchWorld, fdLimit: number): ManagedProcess {
  const env = serviceEnv("counters", {
    natsUrl: world.natsUrl,
    stream: world.stream,
    prefix: world.prefix,
    secret: world.secret,
    databaseUrls: {
      dialogs: world.dbUrl(world.dbs.dialogs),
      counters: world.dbUrl(world.dbs.counters),
    },
    redisUrl: world.redisUrl,
  });
  const port = world.counters.port;
  return managedProcess({
    name: "counters",
    port,
    command: "sh",
    args: [
      "-c",
      `ulimit -n ${fdLimit} 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$0" "$@"`,
      Deno.execPath(),
      "run",
      "--allow-all",
      SERVICE_V8_FLAGS,
      `${ROOT}counters/main.ts`,
    ],
    env: { NO_COLOR: "1", ...env, PORT: String(port) },
    logFile: `${world.logs}/counters.log`,
  });
}

/** The lines of the results, as the bench prints them. */
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
      }, heap ${mb(churn.before.heapMb)}; after each round RSS ${
        churn.rounds.map((r) => mb(r.after.rssMb)).join(", ")
      }, heap ${churn.rounds.map((r) => mb(r.after.heapMb)).join(", ")}; last/before RSS ${
        churn.rssRatio.toFixed(2)
      }, heap ${churn.heapRatio.toFixed(2)}; released in ${
        churn.rounds.map((r) => `${r.releasedMs.toFixed(0)} ms`).join(", ")
      }`,
    );
  }
  if (load) {
    lines.push(
      `(f) ${load.streams} streams (opened in ${(load.openedInMs / 1000).toFixed(1)} s), ` +
        `${load.sendsPerSecond} sends/s for ${load.seconds} s: send → event p50 ${
          load.p50Ms.toFixed(0)
        } ms, p99 ${load.p99Ms.toFixed(0)} ms, max ${load.maxMs.toFixed(0)} ms ` +
        `(${load.sent} sent, ${load.failedSends} failed, ${load.lost} events missing); ` +
        `RSS idle ${mb(load.idle.rssMb)}, loaded ${mb(load.loaded.rssMb)}; idle CPU ${
          load.idleCpuPercent.toFixed(1)
        }% of a core over ${load.idleSeconds} s`,
    );
  }
  return lines;
}

interface StreamsArgs {
  streams: number[];
  rounds: number;
  churn: number;
  load: number;
  sendsPerSecond: number;
  seconds: number;
}

function parseArgs(args: string[]): StreamsArgs {
  const options: StreamsArgs = {
    streams: [1_000, 5_000],
    rounds: 3,
    churn: 5_000,
    load: 10_000,
    sendsPerSecond: 100,
    seconds: 20,
  };
  const list = (s: string) => s.split(",").filter(Boolean).map(Number);
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--streams") options.streams = list(args[++i]!);
    else if (a === "--rounds") options.rounds = Number(args[++i]);
    else if (a === "--churn") options.churn = Number(args[++i]);
    else if (a === "--load") options.load = Number(args[++i]);
    else if (a === "--rate") options.sendsPerSecond = Number(args[++i]);
    else if (a === "--seconds") options.seconds = Number(args[++i]);
    else throw new Error(`unknown option ${a}`);
  }
  return options;
}

if (import.meta.main) {
  const args = parseArgs(Deno.args);
  const world = await planWorld();
  const counters = countersWithFdLimit(world, 20_000);
  try {
    await Promise.all([counters.start(), world.dialogs.start()]);
    const url = `http://127.0.0.1:${counters.port}`;
    const dialogsUrl = `http://127.0.0.1:${world.dialogs.port}`;
    const memory: StreamsMemory[] = [];
    for (const n of args.streams) {
      memory.push(await measureStreamMemory(url, world.secret, n));
      console.log(streamsLines(memory.slice(-1), undefined, undefined)[0]);
    }
    const churn = args.rounds > 0
      ? await measureChurn(url, world.secret, args.churn, args.rounds)
      : undefined;
    if (churn) console.log(streamsLines([], churn, undefined)[0]);
    const load = args.load > 0
      ? await measureStreamsLoad({
        countersUrl: url,
        countersPid: counters.pid!,
        dialogsUrl,
        secret: world.secret,
        streams: args.load,
        sendsPerSecond: args.sendsPerSecond,
        seconds: args.seconds,
        idleSeconds: 10,
      })
      : undefined;
    if (load) console.log(streamsLines([], undefined, load)[0]);
  } finally {
    await counters.terminate().catch(() => {});
    await tearDownWorld(world);
  }
}
