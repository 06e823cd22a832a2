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

/** A free TCP port on 127.0.0.1. */
export function freePort(): number {
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
      await (spec.ready ?? (() => waitForPort(spec.port)))();
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
