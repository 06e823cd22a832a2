/** Child processes of `deno task compose:verify`: each in its own process group, so a stop kills all. */

/** A command that failed; `output` holds the end of what it printed. */
export class CommandError extends Error {
  override name = "CommandError";
  constructor(message: string, readonly output: string) {
    super(message);
  }
}

/** How to run a command. */
export interface RunOptions {
  env?: Record<string, string>;
  cwd?: string;
  /** Seconds before the command's process group is killed; 600 unless told. */
  timeoutSeconds?: number;
  /** Return the result instead of throwing when the exit code is not 0. */
  allowFailure?: boolean;
}

/** What a finished command printed and how it exited. */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

const running = new Set<Deno.ChildProcess>();
/** COMPOSE_VERIFY_LOG names a file that gets every command with its whole output. */
const transcript = Deno.env.get("COMPOSE_VERIFY_LOG");
const decoder = new TextDecoder();

/** Signals the process group of every `run` command still running; background ones are left. */
export function stopAllCommands(signal: Deno.Signal = "SIGTERM"): void {
  for (const child of running) killGroup(child, signal);
}

function killGroup(child: Deno.ChildProcess, signal: Deno.Signal): void {
  try {
    Deno.kill(-child.pid, signal);
  } catch { /* already gone */ }
}

/** The last `lines` lines of `text`. */
export function tail(text: string, lines = 40): string {
  return text.trimEnd().split("\n").slice(-lines).join("\n");
}

/** Runs `cmd` to completion with its output captured; throws a CommandError when it fails. */
export async function run(
  cmd: string,
  args: string[],
  options: RunOptions = {},
): Promise<RunResult> {
  const child = spawn(cmd, args, options, "piped");
  running.add(child);
  const timer = setTimeout(() => {
    killGroup(child, "SIGTERM");
    setTimeout(() => killGroup(child, "SIGKILL"), 5_000);
  }, (options.timeoutSeconds ?? 600) * 1000);
  try {
    const out = await child.output();
    const result = {
      code: out.code,
      stdout: decoder.decode(out.stdout),
      stderr: decoder.decode(out.stderr),
    };
    if (transcript) {
      const text = `$ ${
        [cmd, ...args].join(" ")
      }  # exit ${result.code}\n${result.stdout}${result.stderr}\n`;
      await Deno.writeTextFile(transcript, text, { append: true });
    }
    if (result.code !== 0 && !options.allowFailure) {
      const shown = [cmd, ...args].join(" ");
      throw new CommandError(
        `\`${shown.length > 160 ? `${shown.slice(0, 160)}…` : shown}\` exited with ${result.code}`,
        tail(`${result.stdout}\n${result.stderr}`),
      );
    }
    return result;
  } finally {
    clearTimeout(timer);
    running.delete(child);
  }
}

/** Like `run`, but answers whether the command exists and exits 0, never throwing. */
export async function succeeds(cmd: string, args: string[], options: RunOptions = {}) {
  try {
    return (await run(cmd, args, { timeoutSeconds: 30, ...options, allowFailure: true })).code ===
      0;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}

/**
 * Starts `cmd` in the background with its output discarded. `stopAllCommands` leaves it alone: the
 * teardown still needs it (podman's socket) and ends it with `stopCommand`.
 */
export function startCommand(cmd: string, args: string[], options: RunOptions = {}) {
  return spawn(cmd, args, options, "null");
}

/** SIGTERM to a background command's process group, SIGKILL after 10 s, and waits for it. */
export async function stopCommand(child: Deno.ChildProcess): Promise<void> {
  killGroup(child, "SIGTERM");
  const timer = setTimeout(() => killGroup(child, "SIGKILL"), 10_000);
  await child.status;
  clearTimeout(timer);
}

function spawn(cmd: string, args: string[], options: RunOptions, stdio: "piped" | "null") {
  return new Deno.Command(cmd, {
    args,
    env: options.env,
    cwd: options.cwd,
    stdin: "null",
    stdout: stdio,
    stderr: stdio,
    // A process group of its own: a stop reaches the command's children too (debootstrap's dpkg).
    detached: true,
  }).spawn();
}

/** Resolves after `ms`, or at once when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
  });
}
