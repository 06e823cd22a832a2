/**
 * Past one core (issue 15): `GET /api/counters` from one counters process against N processes
 * sharing one port (`REUSE_PORT=true`: SO_REUSEPORT, the kernel spreads the connections), at the
 * same wrk load, beside (b)'s floor (bench/floor_server.ts) measured in the same round. Each run
 * gives requests/s, p50/p99 and the CPU time per request of the processes that served it (user +
 * system from /proc, over the run, divided by the requests); rounds alternate, so each ratio is
 * taken side by side on a noisy machine.
 *
 * Run alone it starts its own world (bench/world.ts: its databases, stream and key prefix):
 * `deno run --allow-all bench/parallel.ts [--processes 1,2] [--rounds 3] [--seconds 10]
 * [--connections 64] [--heavy]`. `--processes 1` measures (b) against its floor only.
 */
import { type ManagedProcess, managedProcess, SERVICE_V8_FLAGS } from "../testing/processes.ts";
import { serviceEnv } from "../testing/services_env.ts";
import { log, seedUsers } from "./measure.ts";
import { planWorld, tearDownWorld } from "./world.ts";
import { runWrk, type WrkResult } from "./wrk.ts";

const ROOT = new URL("../", import.meta.url).pathname;

/** Seconds of CPU the process has used (user + system), from /proc. */
export async function cpuSeconds(pid: number): Promise<number> {
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // utime and stime are fields 14 and 15 of stat, 12 and 13 after the command; in 1/100 s.
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** The inodes of the sockets in /proc/net/tcp{,6} whose local port is `port`, in `state`. */
async function socketInodes(
  port: number,
  state: "LISTEN" | "ESTABLISHED",
  remotePort?: number,
): Promise<Set<string>> {
  const hex = (n: number) => n.toString(16).toUpperCase().padStart(4, "0");
  const code = state === "LISTEN" ? "0A" : "01";
  const inodes = new Set<string>();
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    const text = await Deno.readTextFile(file).catch(() => "");
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || f[3] !== code || !f[1]!.endsWith(`:${hex(port)}`)) continue;
      if (remotePort !== undefined && !f[2]!.endsWith(`:${hex(remotePort)}`)) continue;
      inodes.add(f[9]!);
    }
  }
  return inodes;
}

/** Whether process `pid` holds one of the sockets `inodes`. */
async function holdsSocket(pid: number, inodes: Set<string>): Promise<boolean> {
  if (inodes.size === 0) return false;
  for await (const fd of Deno.readDir(`/proc/${pid}/fd`)) {
    const link = await Deno.readLink(`/proc/${pid}/fd/${fd.name}`).catch(() => "");
    const inode = /^socket:\[(\d+)\]$/.exec(link)?.[1];
    if (inode !== undefined && inodes.has(inode)) return true;
  }
  return false;
}

/** Whether process `pid` listens on TCP `port` (its own socket, when several share the port). */
export async function listensOn(pid: number, port: number): Promise<boolean> {
  return holdsSocket(pid, await socketInodes(port, "LISTEN"));
}

/**
 * Which of `pids` accepted the connection from local port `clientPort` to `serverPort` (the
 * kernel's choice among the processes sharing the port); undefined when none holds it.
 */
export async function acceptedBy(
  pids: number[],
  serverPort: number,
  clientPort: number,
): Promise<number | undefined> {
  const inodes = await socketInodes(serverPort, "ESTABLISHED", clientPort);
  for (const pid of pids) if (await holdsSocket(pid, inodes)) return pid;
  return undefined;
}

/** Resolves when `pid` listens on `port`; rejects after `timeoutMs`. */
async function untilListening(pid: () => number | undefined, port: number, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const p = pid();
    if (p !== undefined && await listensOn(p, port).catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`process ${pid()} did not listen on ${port} within ${timeoutMs} ms`);
}

/**
 * A counters process on `port` with `REUSE_PORT=true`, run as the tasks run it; ready when it
 * listens on the port itself (another process may already answer there).
 */
export function countersOnSharedPort(options: {
  name: string;
  port: number;
  env: Record<string, string>;
  logFile: string;
}): ManagedProcess {
  const process: ManagedProcess = managedProcess({
    name: options.name,
    port: options.port,
    command: Deno.execPath(),
    // `reusePort` is an unstable network API in Deno 2.9: deno.json turns on `unstable: ["net"]`.
    args: ["run", "--allow-all", SERVICE_V8_FLAGS, `${ROOT}counters/main.ts`],
    env: { NO_COLOR: "1", ...options.env, PORT: String(options.port), REUSE_PORT: "true" },
    logFile: options.logFile,
    ready: () => untilListening(() => process.pid, options.port),
  });
  return process;
}

/** One wrk run with the CPU the serving processes spent on it. */
export interface ServedRun extends WrkResult {
  /** µs of CPU (user + system, all serving processes) per request answered. */
  cpuUsPerRequest: number;
  /** Each process' share of that CPU. */
  cpuShares: number[];
}

/** Runs wrk against `url` with `tokens` and reads the CPU of `pids` around it. */
export async function servedRun(
  url: string,
  pids: number[],
  options: { connections: number; seconds: number; tokens: string[] },
): Promise<ServedRun> {
  const before = await Promise.all(pids.map(cpuSeconds));
  const run = await runWrk(url, options);
  const after = await Promise.all(pids.map(cpuSeconds));
  const spent = after.map((a, i) => a - before[i]!);
  const total = spent.reduce((s, x) => s + x, 0);
  const requests = run.requestsPerSecond * options.seconds;
  return {
    ...run,
    cpuUsPerRequest: requests > 0 ? total * 1e6 / requests : NaN,
    cpuShares: spent.map((s) => total > 0 ? s / total : 0),
  };
}

/** The 1-, 5- and 15-minute load averages. */
export async function loadAverage(): Promise<string> {
  return (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3).join(" ");
}

interface ParallelArgs {
  processes: number[];
  rounds: number;
  seconds: number;
  connections: number;
  heavy: boolean;
}

function parseArgs(args: string[]): ParallelArgs {
  const options: ParallelArgs = {
    processes: [1, 2],
    rounds: 3,
    seconds: 10,
    connections: 64,
    heavy: false,
  };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--processes") options.processes = args[++i]!.split(",").map(Number);
    else if (a === "--rounds") options.rounds = Number(args[++i]);
    else if (a === "--seconds") options.seconds = Number(args[++i]);
    else if (a === "--connections") options.connections = Number(args[++i]);
    else if (a === "--heavy") options.heavy = true;
    else throw new Error(`unknown option ${a}`);
  }
  const numbers = [...options.processes, options.rounds, options.seconds, options.connections];
  if (!numbers.every((n) => Number.isInteger(n) && n > 0)) {
    throw new Error("numbers must be positive integers");
  }
  return options;
}

/** One row of the printed table. */
function row(what: string, run: ServedRun, floor: ServedRun): string {
  const shares = run.cpuShares.length > 1
    ? ` (${run.cpuShares.map((s) => `${(s * 100).toFixed(0)}%`).join("/")})`
    : "";
  return `| ${what} | ${run.requestsPerSecond.toFixed(0)} | ${
    (run.requestsPerSecond / floor.requestsPerSecond).toFixed(2)
  } | ${run.p50Ms.toFixed(2)} | ${run.p99Ms.toFixed(2)} | ${
    run.cpuUsPerRequest.toFixed(1)
  }${shares} | ${run.errors} |`;
}

async function main() {
  const args = parseArgs(Deno.args);
  const most = Math.max(...args.processes);
  const world = await planWorld();
  const env = serviceEnv("counters", world.deployment);
  const port = world.counters.port;
  const counters = Array.from({ length: most }, (_, i) =>
    countersOnSharedPort({
      name: `counters-${i + 1}`,
      port,
      env,
      logFile: `${world.logs}/counters-${i + 1}.log`,
    }));
  const stop = () => {
    log("stopped; tearing down");
    Promise.all(counters.map((c) => c.terminate().catch(() => {})))
      .then(() => tearDownWorld(world))
      .finally(() => Deno.exit(130));
  };
  for (const signal of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(signal, stop);
  try {
    await Promise.all([counters[0]!.start(), world.floor.start()]);
    const seeded = await seedUsers(world);
    await seeded.dSql.end();
    await seeded.cSql.end();
    const tokens = args.heavy ? seeded.heavyTokens : seeded.lightTokens;
    const load = { connections: args.connections, seconds: args.seconds, tokens };
    const countersUrl = `http://127.0.0.1:${port}/api/counters`;
    const floorUrl = `http://127.0.0.1:${world.floor.port}/api/counters`;
    const lines = [
      `${args.heavy ? "users with 10,000 unread" : "10,000 users"}, ${args.connections} ` +
      `connections, ${args.seconds} s per run; load average before: ${await loadAverage()}`,
      "",
      "| run | requests/s | × floor | p50 ms | p99 ms | CPU µs/request | errors |",
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ];
    log("warming the floor's token cache");
    await runWrk(floorUrl, load);
    for (let round = 1; round <= args.rounds; round++) {
      log(`round ${round}: (b)'s floor`);
      const floor = await servedRun(floorUrl, [world.floor.pid!], load);
      lines.push(row(`round ${round}: (b)'s floor`, floor, floor));
      for (const n of args.processes) {
        // Exactly n processes listen on the port.
        for (const [i, c] of counters.entries()) {
          if (i < n) await c.start();
          else await c.terminate();
        }
        const pids = counters.slice(0, n).map((c) => c.pid!);
        // Two warm-up runs: on a busy machine one may not reach every user on every process.
        log(`round ${round}: ${n} counters process(es) on one port, warming`);
        await runWrk(countersUrl, load);
        await runWrk(countersUrl, load);
        log(`round ${round}: ${n} counters process(es), measuring`);
        const run = await servedRun(countersUrl, pids, load);
        lines.push(row(`round ${round}: (b), ${n} process${n > 1 ? "es" : ""}`, run, floor));
      }
    }
    lines.push("", `load average after: ${await loadAverage()}`);
    console.log(lines.join("\n"));
  } finally {
    for (const signal of ["SIGINT", "SIGTERM"] as const) Deno.removeSignalListener(signal, stop);
    await Promise.all(counters.map((c) => c.terminate().catch(() => {})));
    await tearDownWorld(world);
  }
}

if (import.meta.main) {
  try {
    await main();
  } catch (err) {
    console.error(`parallel: ${(err as Error).message}`);
    Deno.exit(1);
  }
}
