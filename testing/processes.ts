/** Processes the chaos run starts, kills and restarts: its own nats-server, redis-server and services. */

/** A restartable child process with its output appended to a log file. */
export interface ManagedProcess {
  name: string;
  port: number;
  /** True between a start and a kill or exit. */
  readonly running: boolean;
  /** The operating system's process id while running. */
  readonly pid: number | undefined;
  start(): Promise<void>;
  /** SIGKILL: no chance to clean up. */
  kill(): Promise<void>;
  /** SIGTERM and wait; resolves to the exit code and how long it took. */
  terminate(): Promise<{ code: number; ms: number }>;
}

/** The lowest port of the kernel's ephemeral range: the source ports of outgoing connections. */
function ephemeralPortsFrom(): number {
  try {
    const range = Deno.readTextFileSync("/proc/sys/net/ipv4/ip_local_port_range");
    return Number(range.trim().split(/\s+/)[0]) || 32_768;
  } catch {
    return 32_768;
  }
}

/** Ports freePort() picks from: registered, below the ephemeral range. */
const PICKED_FROM = 10_000;

/**
 * A free TCP port on 127.0.0.1, below the kernel's ephemeral range: a port the kernel handed out
 * (port 0) can be taken as the source port of any outgoing connection before the process it was
 * meant for binds it, and a suite opens thousands of connections.
 */
export function freePort(): number {
  const below = ephemeralPortsFrom();
  for (let i = 0; below > PICKED_FROM && i < 100; i++) {
    const port = PICKED_FROM + Math.floor(Math.random() * (below - PICKED_FROM));
    try {
      Deno.listen({ hostname: "127.0.0.1", port }).close();
      return port;
    } catch { /* taken: another */ }
  }
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** Resolves when 127.0.0.1:`port` accepts connections; rejects after `timeoutMs`. */
export async function waitForPort(port: number, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  throw new Error(`nothing answered on 127.0.0.1:${port} within ${timeoutMs} ms`);
}

/** Options of a managed process. */
export interface ProcessSpec {
  name: string;
  port: number;
  command: string;
  args: string[];
  env?: Record<string, string>;
  logFile: string;
  /** Resolves once the process serves; defaults to its port accepting connections. */
  ready?: () => Promise<void>;
}

/** The last lines of a log file, or what kept it from being read. */
async function logTail(path: string, lines = 10): Promise<string> {
  try {
    return (await Deno.readTextFile(path)).trimEnd().split("\n").slice(-lines).join("\n");
  } catch (err) {
    return `(not readable: ${(err as Error).message})`;
  }
}

/** Wraps `spec` in a process that can be started again after a kill. */
export function managedProcess(spec: ProcessSpec): ManagedProcess {
  let child: Deno.ChildProcess | undefined;
  let log: Deno.FsFile | undefined;
  let exited: Promise<Deno.CommandStatus> | undefined;
  const pipe = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream) await log?.write(chunk).catch(() => {});
  };
  const self: ManagedProcess = {
    name: spec.name,
    port: spec.port,
    get running() {
      return child !== undefined;
    },
    get pid() {
      return child?.pid;
    },
    async start() {
      if (child) return;
      log = await Deno.open(spec.logFile, { append: true, create: true });
      const proc = new Deno.Command(spec.command, {
        args: spec.args,
        env: spec.env,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      child = proc;
      const outputs = Promise.all([pipe(proc.stdout), pipe(proc.stderr)]);
      exited = proc.status.then(async (status) => {
        await outputs;
        if (child === proc) child = undefined;
        return status;
      });
      // A process that exits before it serves (a port taken, a bad argument) fails the start at
      // once, with the end of its log.
      const died = exited.then(async (status) => {
        throw new Error(
          `${spec.name} exited with code ${status.code} before it served; its log ends:\n${await logTail(
            spec.logFile,
          )}`,
        );
      });
      await Promise.race([(spec.ready ?? (() => waitForPort(spec.port)))(), died]);
    },
    async kill() {
      const proc = child;
      if (!proc) return;
      try {
        proc.kill("SIGKILL");
      } catch { /* already gone */ }
      await exited;
      child = undefined;
    },
    async terminate() {
      const proc = child;
      if (!proc) return { code: 0, ms: 0 };
      const started = Date.now();
      proc.kill("SIGTERM");
      const status = await exited!;
      child = undefined;
      return { code: status.code, ms: Date.now() - started };
    },
  };
  return self;
}

/** Finds a binary on PATH or in the usual Debian places. */
export async function findBinary(name: string): Promise<string> {
  const dirs = [
    ...(Deno.env.get("PATH") ?? "").split(":"),
    "/usr/sbin",
    "/usr/bin",
    "/usr/local/bin",
  ];
  for (const dir of dirs) {
    const path = `${dir}/${name}`;
    try {
      if ((await Deno.stat(path)).isFile) return path;
    } catch { /* not here */ }
  }
  throw new Error(`${name} not found: install it (apt-get install ${name})`);
}

/** The V8 flags the services run with in deno.json's tasks and the Dockerfile. */
export const SERVICE_V8_FLAGS = "--v8-flags=--max-semi-space-size=4,--heap-growing-percent=20";

const ROOT = new URL("../", import.meta.url).pathname;

/**
 * A Deno program of this repository (e.g. `dialogs/main.ts`) run as the tasks run it, on a free
 * port (`PORT`); ready when `readyPath` answers 2xx, or without one when the port accepts.
 */
export function denoProcess(options: {
  name: string;
  script: string;
  env: Record<string, string>;
  logFile: string;
  readyPath?: string;
  /** Deno flags besides the usual ones, e.g. `--cpu-prof` for a bench. */
  flags?: string[];
}): ManagedProcess {
  const port = freePort();
  return managedProcess({
    name: options.name,
    port,
    command: Deno.execPath(),
    args: [
      "run",
      "--allow-all",
      SERVICE_V8_FLAGS,
      ...(options.flags ?? []),
      `${ROOT}${options.script}`,
    ],
    env: { NO_COLOR: "1", ...options.env, PORT: String(port) },
    logFile: options.logFile,
    ready: options.readyPath
      ? () => waitForHttp(`http://127.0.0.1:${port}${options.readyPath}`, 60_000)
      : undefined,
  });
}

/** Resolves when `url` answers 2xx; rejects after `timeoutMs`. */
export async function waitForHttp(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1_000) });
      await res.body?.cancel();
      if (res.ok) return;
    } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} did not answer within ${timeoutMs} ms`);
}
