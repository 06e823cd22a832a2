/**
 * `deno task compose:verify`: runs the unmodified compose files for real, one stack after the other:
 * docker-compose.yml alone, then with docker-compose.scale.yml (two instances of each service behind
 * nginx, a three-node NATS cluster). Each time it walks the README's walkthrough over HTTP; in the
 * scaled stack it kills one instance of each service and the NATS node leading the stream midway.
 * Then it removes everything it made. With a Docker engine it uses the real images; with podman and
 * no registry it first builds local stand-ins (docker/standins/).
 *   deno task compose:verify [--only simple|scaled]
 */
import {
  CommandError,
  run,
  type RunOptions,
  sleep,
  stopAllCommands,
} from "./compose_verify/commands.ts";
import {
  containerIds,
  findOurs,
  PROJECT_PREFIX,
  removeOurs,
  removeWorkDir,
  RUN_LABEL,
  stopConmons,
} from "./compose_verify/cleanup.ts";
import { type ComposeFacts, readComposeFacts } from "./compose_verify/compose_file.ts";
import {
  detectEngine,
  type Engine,
  ensurePodmanRuntime,
  ensurePodmanUlimits,
  projectStates,
  runPodmanHealthChecks,
  startPodmanService,
} from "./compose_verify/engine.ts";
import {
  buildBaseImage,
  buildStandin,
  refuseToShadow,
  standinFolder,
  withoutStandins,
} from "./compose_verify/standins.ts";
import {
  reportStep as step,
  walkthrough,
  type WalkthroughTarget,
} from "./compose_verify/walkthrough.ts";

const HEALTHY_WITHIN_MS = 180_000;
const root = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const started = performance.now();
const runId = crypto.randomUUID().slice(0, 8);
const elapsed = () => `${((performance.now() - started) / 1000).toFixed(1)} s`;

/** One stack the verification runs: its compose files and its own compose project. */
interface Stack {
  name: "simple" | "scaled";
  files: string[];
  project: string;
  facts: ComposeFacts;
}

const only = parseOnly(Deno.args);
const stacks: Stack[] = [];
for (
  const [name, files, suffix] of [
    ["simple", ["docker-compose.yml"], ""],
    ["scaled", ["docker-compose.yml", "docker-compose.scale.yml"], "s"],
  ] as const
) {
  if (only && only !== name) continue;
  const paths = files.map((f) => `${root}/${f}`);
  const facts = await readComposeFacts(paths);
  stacks.push({ name, files: paths, project: `${PROJECT_PREFIX}${runId}${suffix}`, facts });
}
const allOurs = new RegExp(`^${PROJECT_PREFIX}${runId}`);
// A profile's service with no stand-in (Jaeger for `--profile tracing`) is named once, not run.
for (const line of withoutStandins(stacks.flatMap((s) => s.facts.profiled))) {
  console.log(`compose:verify: ${line}`);
}

const found = await detectEngine();
if (typeof found === "string") {
  console.error(`compose:verify: ${found}`);
  Deno.exit(1);
}
for (const { service, host } of stacks.flatMap((s) => s.facts.published)) {
  try {
    Deno.listen({ port: host }).close();
  } catch {
    console.error(
      `compose:verify: port ${host} (${service}) is taken; stop what listens there first`,
    );
    Deno.exit(1);
  }
}

/** Undo actions, run last-in first-out by the teardown, whatever happened before. */
const undo: { what: string; action: () => Promise<void> }[] = [];
/** One per stack: aborting it ends that stack's podman health checks. */
const healthChecks: AbortController[] = [];
const interruption = new AbortController();
let interrupted = false;
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(signal, () => {
    if (interrupted) return;
    interrupted = true;
    console.log(`compose:verify: ${signal}: stopping, then tearing down`);
    interruption.abort(new Error(`${signal}: interrupted`));
    for (const checks of healthChecks) checks.abort();
    stopAllCommands();
  });
}

const engine: Engine = { ...found, env: {} };
const compose = (stack: Stack, args: string[], options: RunOptions = {}) =>
  run(
    engine.compose[0]!,
    [
      ...engine.compose.slice(1),
      "-p",
      stack.project,
      ...stack.files.flatMap((f) => ["-f", f]),
      ...args,
    ],
    { cwd: root, ...options, env: { ...engine.env, ...options.env } },
  );

console.log(`compose:verify: ${engine.description}, run ${runId}`);
let failure: unknown;
let current: Stack | undefined;
const downRegistered = new Set<string>();
/** What the scaled walkthrough killed midway, by compose project. */
const killed = new Map<string, string[]>();
/** The full ids of every container the run made in podman, for stopping their conmons at the end. */
const runContainers = new Set<string>();
try {
  if (engine.kind === "podman") await preparePodman();
  for (const stack of stacks) {
    current = stack;
    const files = stack.files.map((f) => f.slice(root.length + 1)).join(" + ");
    console.log(`compose:verify: ${stack.name} stack (${files}), compose project ${stack.project}`);
    await composeUp(stack);
    if (stack.name === "scaled") await natsCurrent(stack);
    await walkthrough(target(stack), runId);
    if (stack.name === "scaled") await restartKilled(stack);
    await keepLogs(stack);
    await step(`${engine.compose.join(" ")} down -v`, async () => {
      await rememberContainers(stack);
      await compose(stack, ["down", "-v", "--remove-orphans"], { timeoutSeconds: 180 });
      healthChecks.at(-1)?.abort();
      return `at ${elapsed()}`;
    });
    current = undefined;
  }
} catch (err) {
  failure = err;
  if (!(err as { reported?: boolean }).reported) console.log(`FAIL ${(err as Error).message}`);
  if (err instanceof CommandError && err.output && !interrupted) console.log(indent(err.output));
  if (current && !interrupted) await showUnhealthy(current);
  if (current && !interrupted) await keepLogs(current);
} finally {
  await teardown();
}
console.log(`compose:verify: ${failure || interrupted ? "FAIL" : "PASS"} in ${elapsed()}`);
Deno.exit(failure || interrupted ? 1 : 0);

function parseOnly(args: string[]): "simple" | "scaled" | undefined {
  if (args.length === 0) return undefined;
  const value = args[0] === "--only" ? args[1] : /^--only=(.*)$/.exec(args[0] ?? "")?.[1];
  if (
    (value === "simple" || value === "scaled") && args.length === (args[0] === "--only" ? 2 : 1)
  ) {
    return value;
  }
  console.error("usage: deno task compose:verify [--only simple|scaled]");
  Deno.exit(2);
}

/** The URL on the host of the published port whose container port is `port`. */
function urlFor(stack: Stack, port: number): string {
  const published = stack.facts.published.find((p) => p.container === port);
  if (!published) throw new Error(`${stack.name} stack publishes no port ${port}`);
  return `http://127.0.0.1:${published.host}`;
}

/** Where the walkthrough finds `stack`, and (scaled) what it kills midway. */
function target(stack: Stack): WalkthroughTarget {
  const services = {
    postgres: "postgres",
    counters: stack.name === "scaled" ? "counters-1" : "counters",
    nats: "nats",
  };
  const exec = async (service: string, args: string[], env: Record<string, string> = {}) => {
    const vars = Object.entries(env).flatMap(([k, v]) => ["-e", `${k}=${v}`]);
    return (await compose(stack, ["exec", "-T", ...vars, service, ...args], {
      timeoutSeconds: 60,
    })).stdout;
  };
  return {
    dialogsUrl: urlFor(stack, 8081),
    countersUrl: urlFor(stack, 8082),
    jwtSecret: stack.facts.jwtSecret,
    signal: interruption.signal,
    services,
    exec,
    midway: stack.name === "scaled"
      ? {
        name: "kill -9 one instance of each service and the NATS node leading the stream",
        run: async () => {
          const nodes = natsNodes(stack);
          const saga = await sagaOn(stack, "nats");
          const leader = saga?.cluster?.leader;
          const replicas = 1 + (saga?.cluster?.replicas?.length ?? 0);
          if (!leader || !nodes.includes(leader) || replicas !== nodes.length) {
            throw new Error(
              `expected stream SAGA led by one of ${nodes.join(", ")} with ${nodes.length} ` +
                `replicas, got ${JSON.stringify(saga?.cluster ?? null)}`,
            );
          }
          const victims = ["dialogs-2", "counters-2", leader];
          await compose(stack, ["kill", "-s", "SIGKILL", ...victims], { timeoutSeconds: 60 });
          killed.set(stack.project, victims);
          services.nats = nodes.find((n) => n !== leader)!;
          return `SAGA had ${replicas} replicas led by ${leader}; killed ${victims.join(", ")}`;
        },
      }
      : undefined,
  };
}

/** A stream as NATS' /jsz?streams=true shows it. */
interface JszStream {
  name: string;
  cluster?: { leader?: string; replicas?: unknown[] };
  state?: { messages?: number; last_seq?: number };
}

/** The NATS nodes of `stack`: nats, nats-2, … */
function natsNodes(stack: Stack): string[] {
  return stack.facts.services.filter((s) => /^nats(-\d+)?$/.test(s));
}

/** GET `path` of NATS node `node`'s monitoring port, from inside its container. */
function natsMonitor(
  stack: Stack,
  node: string,
  path: string,
  options: { allowFailure?: boolean },
) {
  return compose(stack, [
    "exec",
    "-T",
    node,
    "wget",
    "-q",
    "-O",
    "-",
    `http://127.0.0.1:8222${path}`,
  ], { ...options, timeoutSeconds: 60 });
}

/** The stream SAGA as NATS node `node` of `stack` sees it. */
async function sagaOn(stack: Stack, node: string): Promise<JszStream | undefined> {
  const out = await natsMonitor(stack, node, "/jsz?streams=true", {});
  const jsz = JSON.parse(out.stdout) as { account_details?: { stream_detail?: JszStream[] }[] };
  return jsz.account_details?.flatMap((a) => a.stream_detail ?? []).find((s) => s.name === "SAGA");
}

/**
 * Waits until every NATS node's /healthz answers 200: with the services' streams and consumers
 * made (after the containers turned healthy), that is when each node is current with their leaders.
 */
async function natsCurrent(stack: Stack) {
  await step("every NATS node current with the streams and consumers (/healthz)", async () => {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const answers = await Promise.all(
        natsNodes(stack).map(async (node) => {
          const out = await natsMonitor(stack, node, "/healthz", { allowFailure: true });
          return { node, ok: out.code === 0, text: `${out.stdout}${out.stderr}`.trim() };
        }),
      );
      if (answers.every((a) => a.ok)) {
        return `${answers.map((a) => a.node).join(", ")} at ${elapsed()}`;
      }
      if (Date.now() > deadline) {
        const bad = answers.filter((a) => !a.ok).map((a) => `${a.node}: ${a.text}`);
        throw new Error(`not current after 60 s: ${bad.join("; ")}`);
      }
      await sleep(1000);
    }
  });
}

/**
 * Starts again what the scaled walkthrough killed, waits until everything is healthy, and until
 * every NATS node holds the stream up to the same last sequence (the killed node caught up).
 */
async function restartKilled(stack: Stack) {
  const victims = killed.get(stack.project) ?? [];
  await step(`${victims.join(", ")} start again and catch up`, async () => {
    await compose(stack, ["start", ...victims], { timeoutSeconds: 120 });
    await waitHealthy(stack);
    const deadline = Date.now() + 30_000;
    for (;;) {
      const seqs = await Promise.all(
        natsNodes(stack).map(async (n) => `${n} ${(await sagaOn(stack, n))?.state?.last_seq}`),
      );
      const last = new Set(seqs.map((s) => s.split(" ")[1]));
      if (last.size === 1 && !last.has("undefined")) {
        return `all healthy, SAGA at the same last sequence on every node (${seqs.join(", ")}) ` +
          `at ${elapsed()}`;
      }
      if (Date.now() > deadline) {
        throw new Error(`the NATS nodes disagree on SAGA's last sequence: ${seqs.join(", ")}`);
      }
      await sleep(1000);
    }
  });
}

/** Podman: containers.conf, its Docker API socket, leftovers of earlier runs, the stand-in images. */
async function preparePodman() {
  if (await ensurePodmanUlimits()) {
    console.log("compose:verify: added default_ulimits to /etc/containers/containers.conf");
  }
  if (await ensurePodmanRuntime()) {
    console.log("compose:verify: cgroups in hybrid mode: runtime = runc in containers.conf");
  }
  const work = await Deno.makeTempDir({ prefix: "compose-verify-" });
  undo.push({ what: "remove the work folder", action: () => removeWorkDir(work) });
  const all = new RegExp(`^${PROJECT_PREFIX}`);
  const images = [...new Set(stacks.flatMap((s) => s.facts.images))];
  const old = await findOurs(all, RUN_LABEL);
  if (Object.values(old).some((ids) => ids.length > 0)) {
    await step("remove what an interrupted earlier run left", async () => {
      const left = await removeOurs(all, RUN_LABEL);
      if (left) throw new Error(left);
    });
  }
  await refuseToShadow(images);
  const service = await startPodmanService(`${work}/podman.sock`);
  undo.push({ what: "stop podman system service", action: service.stop });
  engine.env = {
    DOCKER_HOST: `unix://${work}/podman.sock`,
    // Build through the Docker API (as a Docker daemon would), not through a docker CLI on PATH.
    COMPOSE_DOCKER_CLI_BUILD: "0",
    DOCKER_BUILDKIT: "0",
  };
  undo.push({
    what: "remove this run's images, containers, volumes and networks from podman",
    action: async () => {
      const left = await removeOurs(allOurs, `${RUN_LABEL}=${runId}`);
      if (left) throw new Error(left);
    },
  });
  await step("Debian bookworm base image (debootstrap, podman import)", async () => {
    const mirror = await buildBaseImage(work, runId);
    return `from ${mirror} in ${elapsed()}`;
  });
  for (const stack of stacks) undoComposeUp(stack);
  const builds = await Promise.allSettled(images.map(async (image) => {
    await step(`stand-in ${image}`, async () => {
      const t0 = performance.now();
      await buildStandin(image, root, work).catch((err) => {
        stopAllCommands(); // one failed: the others need not finish
        throw err;
      });
      return `built in ${((performance.now() - t0) / 1000).toFixed(1)} s`;
    });
    // The services' image needs only the Deno stand-in: build it while the others are built, and
    // `up --build` finds it in the cache (the scaled stack's builds too).
    if (standinFolder(image) === "deno") {
      await step(`${engine.compose.join(" ")} build, beside the other stand-ins`, async () => {
        await compose(stacks[0]!, ["build"]);
        return `at ${elapsed()}`;
      });
    }
  }));
  const failed = builds.find((b): b is PromiseRejectedResult => b.status === "rejected");
  if (failed) throw failed.reason;
}

/** Registers `down -v --rmi local` of `stack` with the teardown, once. */
function undoComposeUp(stack: Stack) {
  if (downRegistered.has(stack.project)) return;
  downRegistered.add(stack.project);
  undo.push({
    what: `${engine.compose.join(" ")} -p ${stack.project} down -v --rmi local`,
    action: async () => {
      await compose(stack, ["down", "-v", "--rmi", "local", "--remove-orphans"], {
        timeoutSeconds: 180,
      });
    },
  });
}

/** `up -d --build`, then waits until every service is healthy. */
async function composeUp(stack: Stack) {
  undoComposeUp(stack);
  if (engine.kind === "podman") {
    const stop = new AbortController();
    healthChecks.push(stop);
    const checks = runPodmanHealthChecks(stack.project, stop.signal);
    undo.push({
      what: `stop the health checks of ${stack.project}`,
      action: async () => {
        stop.abort();
        await checks;
      },
    });
  }
  await step(`${engine.compose.join(" ")} up -d --build`, async () => {
    await compose(stack, ["up", "-d", "--build"], { timeoutSeconds: 600 });
    return `at ${elapsed()}`;
  });
  await step("every service healthy", async () => {
    const states = await waitHealthy(stack);
    return `${states.map((s) => s.service).join(", ")} at ${elapsed()}`;
  });
}

/** Waits until every service of `stack` runs and is healthy; throws naming the laggards. */
async function waitHealthy(stack: Stack) {
  const deadline = Date.now() + HEALTHY_WITHIN_MS;
  for (;;) {
    const states = await projectStates(engine, stack.project);
    const stopped = states.filter((s) => s.status !== "running");
    if (stopped.length) {
      throw new Error(
        `not running: ${stopped.map((s) => `${s.service} (${s.status})`).join(", ")}`,
      );
    }
    const waiting = [
      ...stack.facts.services.filter((name) => !states.some((s) => s.service === name))
        .map((name) => `${name} (no container)`),
      ...states.filter((s) => s.health !== "healthy" && s.health !== "none")
        .map((s) => `${s.service} (${s.health})`),
    ];
    if (waiting.length === 0) return states;
    if (Date.now() > deadline || interrupted) {
      throw new Error(`not healthy after ${HEALTHY_WITHIN_MS / 1000} s: ${waiting.join(", ")}`);
    }
    await sleep(1000);
  }
}

/** After a failure: each service that is not healthy, with the end of its log. */
async function showUnhealthy(stack: Stack) {
  const states = await projectStates(engine, stack.project).catch(() => []);
  for (const name of stack.facts.services) {
    const state = states.find((s) => s.service === name);
    if (state && state.status === "running" && ["healthy", "none"].includes(state.health)) continue;
    if (killed.get(stack.project)?.includes(name) && state?.status !== "running") continue;
    console.log(`-- ${name}: ${state ? `${state.status}, ${state.health}` : "no container"}`);
    const logs = await compose(stack, ["logs", "--no-color", "--tail=25", name], {
      allowFailure: true,
    }).catch(() => undefined);
    if (logs?.stdout.trim()) console.log(indent(logs.stdout));
  }
}

/** With COMPOSE_VERIFY_LOG set, every container's log goes into that file before `down`. */
async function keepLogs(stack: Stack) {
  if (!Deno.env.get("COMPOSE_VERIFY_LOG")) return;
  await compose(stack, ["logs", "--no-color", "--timestamps"], {
    allowFailure: true,
    timeoutSeconds: 60,
  }).catch(() => {});
}

/** Adds the full ids of `stack`'s containers (podman) to `runContainers`. */
async function rememberContainers(stack: Stack) {
  if (engine.kind !== "podman") return;
  for (const id of await containerIds(stack.project)) runContainers.add(id);
}

/** Runs every undo action, newest first, even when one of them fails. */
async function teardown() {
  const t0 = performance.now();
  let broken = false;
  for (const stack of stacks) await rememberContainers(stack).catch(() => {});
  for (const { what, action } of undo.reverse()) {
    try {
      await action();
    } catch (err) {
      broken = true;
      failure ??= err;
      console.log(`FAIL teardown: ${what}: ${(err as Error).message}`);
      if (err instanceof CommandError && err.output) console.log(indent(err.output));
    }
  }
  if (engine.kind === "podman" && undo.length) {
    const left = await findOurs(allOurs, `${RUN_LABEL}=${runId}`);
    const conmons = await stopConmons(runContainers);
    const count = Object.values(left).reduce((n, ids) => n + ids.length, 0) + conmons;
    const ms = Math.round(performance.now() - t0);
    const verdict = count || broken ? "FAIL" : "PASS";
    const summary = `${count} containers, volumes, networks, images or conmon processes left`;
    console.log(`${verdict} teardown: ${summary}, podman service stopped (${ms} ms)`);
    if (count) failure ??= new Error("teardown left things behind");
  }
}

function indent(text: string): string {
  return text.trimEnd().split("\n").map((line) => `    ${line}`).join("\n");
}
