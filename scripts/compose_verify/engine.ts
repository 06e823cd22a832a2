/** The container engine compose:verify drives: a Docker engine as it is, or podman behind its socket. */
import { run, sleep, startCommand, stopCommand, succeeds } from "./commands.ts";

/** A container engine and the compose CLI that talks to it. */
export interface Engine {
  kind: "docker" | "podman";
  /** The engine's own CLI: `docker` or `podman`. */
  cli: string;
  /** The compose command: `["docker", "compose"]` or `["docker-compose"]`. */
  compose: string[];
  /** Environment for the compose CLI (DOCKER_HOST when it talks to podman). */
  env: Record<string, string>;
  /** For the log: which engine and compose CLI. */
  description: string;
}

/** Finds a Docker engine, else podman; returns one line saying what is missing when neither works. */
export async function detectEngine(): Promise<Omit<Engine, "env"> | string> {
  const dockerVersion = await firstLine("docker", ["--version"]);
  // podman-docker installs a `docker` that is podman: that is not a Docker engine.
  const dockerIsPodman = /podman/i.test(dockerVersion);
  if (!dockerIsPodman && await succeeds("docker", ["info"])) {
    const compose = await succeeds("docker", ["compose", "version"])
      ? ["docker", "compose"]
      : await succeeds("docker-compose", ["version"])
      ? ["docker-compose"]
      : undefined;
    if (!compose) {
      return "a Docker engine answers, but neither `docker compose` nor docker-compose is installed";
    }
    const server = await firstLine("docker", ["version", "--format", "{{.Server.Version}}"]);
    return { kind: "docker", cli: "docker", compose, description: `Docker ${server}` };
  }
  const podman = await firstLine("podman", ["--version"]);
  if (!podman) {
    return "neither a Docker engine (`docker info` fails) nor podman is available: install one of them";
  }
  if (Deno.uid() !== 0) {
    return `${podman} found, but the podman path needs root (debootstrap, rootful podman)`;
  }
  if (!await succeeds("debootstrap", ["--version"])) {
    return `${podman} found, but debootstrap is missing`;
  }
  // docker-compose over podman's socket honours `condition: service_healthy`; podman-compose does not.
  const compose = await succeeds("docker-compose", ["version"])
    ? ["docker-compose"]
    : !dockerIsPodman && await succeeds("docker", ["compose", "version"])
    ? ["docker", "compose"]
    : undefined;
  if (!compose) return `${podman} found, but no docker-compose (apt-get install docker-compose)`;
  const composeVersion = await firstLine(compose[0]!, [...compose.slice(1), "version", "--short"]);
  return {
    kind: "podman",
    cli: "podman",
    compose,
    description: `${podman} with ${compose.join(" ")} ${composeVersion}`,
  };
}

async function firstLine(cmd: string, args: string[]): Promise<string> {
  try {
    const out = await run(cmd, args, { timeoutSeconds: 30, allowFailure: true });
    return out.code === 0 ? out.stdout.trim().split("\n")[0]! : "";
  } catch {
    return "";
  }
}

/** This process's hard limit for `name` in /proc/self/limits ("Max open files"), if it has one. */
async function hardLimit(name: string): Promise<number> {
  const limits = await Deno.readTextFile("/proc/self/limits").catch(() => "");
  const hard = new RegExp(`^${name}\\s+\\S+\\s+(\\d+)`, "m").exec(limits)?.[1];
  return hard ? Number(hard) : Infinity;
}

/**
 * Podman 4.3 asks for more open files than this machine's hard limit allows ("error setting
 * rlimit") unless containers.conf sets default_ulimits. Adds the setting when it is missing:
 * 20000 files and 32768 processes, or the hard limits when they are lower.
 */
export async function ensurePodmanUlimits(file = "/etc/containers/containers.conf") {
  const files = Math.min(20000, await hardLimit("Max open files"));
  const procs = Math.min(32768, await hardLimit("Max processes"));
  return await ensureContainersConf(
    file,
    "containers",
    "default_ulimits",
    `["nofile=${files}:${files}", "nproc=${procs}:${procs}"]`,
  );
}

/**
 * crun refuses to start anything on a host whose cgroups are mounted in hybrid mode (v1
 * controllers, plus cgroup2 at /sys/fs/cgroup/unified): "cgroups in hybrid mode not supported".
 * runc runs there. On such a host, sets containers.conf's runtime to runc when none is set; answers
 * whether it did. `mounts` is /proc/mounts' text.
 */
export async function ensurePodmanRuntime(
  file = "/etc/containers/containers.conf",
  mounts?: string,
): Promise<boolean> {
  mounts ??= await Deno.readTextFile("/proc/mounts").catch(() => "");
  const types = new Map(
    mounts.split("\n").map((line) => line.split(" ")).map((f) => [f[1] ?? "", f[2] ?? ""]),
  );
  const hybrid = types.get("/sys/fs/cgroup") !== "cgroup2" &&
    types.get("/sys/fs/cgroup/unified") === "cgroup2";
  if (!hybrid) return false;
  if (!await succeeds("runc", ["--version"])) {
    throw new Error("this host mounts cgroups in hybrid mode, where crun fails: install runc");
  }
  return await ensureContainersConf(file, "engine", "runtime", '"runc"');
}

/** Adds `key = value` to `[section]` of containers.conf unless the key is already set there. */
async function ensureContainersConf(file: string, section: string, key: string, value: string) {
  let text = "";
  try {
    text = await Deno.readTextFile(file);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  const header = new RegExp(`^\\[${section}\\]\\s*$`, "m");
  const start = text.search(header);
  const end = start < 0 ? -1 : text.slice(start + 1).search(/^\[/m);
  const body = start < 0 ? "" : end < 0 ? text.slice(start) : text.slice(start, start + 1 + end);
  if (new RegExp(`^\\s*${key}\\s*=`, "m").test(body)) return false;
  const setting = `${key} = ${value}`;
  text = start >= 0
    ? text.replace(header, `[${section}]\n${setting}`)
    : `${text}${text && !text.endsWith("\n") ? "\n" : ""}[${section}]\n${setting}\n`;
  await Deno.mkdir(file.replace(/\/[^/]*$/, ""), { recursive: true });
  await Deno.writeTextFile(file, text);
  return true;
}

/** Starts `podman system service` on `socket` and resolves once it answers; `stop` ends it. */
export async function startPodmanService(socket: string) {
  const child = startCommand("podman", ["system", "service", "--time=0", `unix://${socket}`]);
  const deadline = Date.now() + 30_000;
  while (!await pings(socket)) {
    if (Date.now() > deadline) {
      await stopCommand(child);
      throw new Error(`podman system service did not answer on ${socket} within 30 s`);
    }
    await sleep(200);
  }
  return { stop: () => stopCommand(child) };
}

async function pings(socket: string): Promise<boolean> {
  try {
    const conn = await Deno.connect({ transport: "unix", path: socket });
    try {
      await conn.write(new TextEncoder().encode("GET /_ping HTTP/1.0\r\nHost: podman\r\n\r\n"));
      const buf = new Uint8Array(256);
      const n = await conn.read(buf);
      return n !== null && / 200 /.test(new TextDecoder().decode(buf.subarray(0, n)));
    } finally {
      conn.close();
    }
  } catch {
    return false;
  }
}

/**
 * Without systemd, podman never runs health checks by itself, so nothing would become healthy and
 * `depends_on: condition: service_healthy` would wait forever. Runs `podman healthcheck run` for
 * each running container of the project at its own interval until `signal` aborts.
 */
export async function runPodmanHealthChecks(project: string, signal: AbortSignal): Promise<void> {
  const intervals = new Map<string, number>();
  const due = new Map<string, number>();
  const inFlight = new Set<string>();
  while (!signal.aborted) {
    const ps = await run("podman", [
      "ps",
      "--filter",
      `label=com.docker.compose.project=${project}`,
      "--format",
      "{{.ID}}",
    ], { allowFailure: true, timeoutSeconds: 30 });
    for (const id of ps.stdout.split("\n").filter(Boolean)) {
      if (!intervals.has(id)) intervals.set(id, await healthInterval(id));
      const interval = intervals.get(id)!;
      if (interval <= 0 || inFlight.has(id) || (due.get(id) ?? 0) > Date.now()) continue;
      inFlight.add(id);
      due.set(id, Date.now() + interval);
      run("podman", ["healthcheck", "run", id], { allowFailure: true, timeoutSeconds: 60 })
        .catch(() => {})
        .finally(() => inFlight.delete(id));
    }
    await sleep(500, signal);
  }
}

/** The container's health check interval in ms, 0 when it has none. */
async function healthInterval(id: string): Promise<number> {
  const out = await run("podman", ["inspect", "--format", "{{json .Config.Healthcheck}}", id], {
    allowFailure: true,
  });
  if (out.code !== 0) return 0;
  const check = JSON.parse(out.stdout || "null") as { Test?: string[]; Interval?: number } | null;
  if (!check?.Test?.length || check.Test[0] === "NONE") return 0;
  return Math.max(500, (check.Interval ?? 30e9) / 1e6);
}

/** A service's container state: `running`, `exited`…, and its health (`none` without a check). */
export interface ServiceState {
  service: string;
  status: string;
  health: string;
}

/** The state of every container of the compose project. */
export async function projectStates(engine: Engine, project: string): Promise<ServiceState[]> {
  const ids = (await run(engine.cli, [
    "ps",
    "-a",
    "-q",
    "--filter",
    `label=com.docker.compose.project=${project}`,
  ])).stdout.split("\n").filter(Boolean);
  if (ids.length === 0) return [];
  const out = await run(engine.cli, [
    "inspect",
    "--format",
    '{{index .Config.Labels "com.docker.compose.service"}} {{json .State}}',
    ...ids,
  ]);
  return out.stdout.split("\n").filter(Boolean).map((line) => {
    const [service, ...json] = line.split(" ");
    const state = JSON.parse(json.join(" ")) as {
      Status: string;
      Health?: { Status?: string } | null;
      Healthcheck?: { Status?: string } | null;
    };
    const health = state.Health?.Status || state.Healthcheck?.Status || "none";
    return { service: service!, status: state.Status, health };
  });
}
