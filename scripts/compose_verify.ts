/**
 * `deno task compose:verify`: runs the unmodified docker-compose.yml for real, walks the README's
 * walkthrough over HTTP against it, then removes everything it made. With a Docker engine it uses the
 * real images; with podman and no registry it first builds local stand-ins (docker/standins/).
 */
import {
  CommandError,
  run,
  type RunOptions,
  sleep,
  stopAllCommands,
} from "./compose_verify/commands.ts";
import {
  findOurs,
  PROJECT_PREFIX,
  removeOurs,
  removeWorkDir,
  RUN_LABEL,
} from "./compose_verify/cleanup.ts";
import { readComposeFacts } from "./compose_verify/compose_file.ts";
import {
  detectEngine,
  type Engine,
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
} from "./compose_verify/standins.ts";
import { reportStep as step, walkthrough } from "./compose_verify/walkthrough.ts";

const HEALTHY_WITHIN_MS = 180_000;
const root = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const composeFile = `${root}/docker-compose.yml`;
const started = performance.now();
const runId = crypto.randomUUID().slice(0, 8);
const project = `${PROJECT_PREFIX}${runId}`;
const elapsed = () => `${((performance.now() - started) / 1000).toFixed(1)} s`;

const found = await detectEngine();
if (typeof found === "string") {
  console.error(`compose:verify: ${found}`);
  Deno.exit(1);
}
const facts = await readComposeFacts(composeFile);
for (const [service, port] of Object.entries(facts.hostPorts)) {
  try {
    Deno.listen({ port }).close();
  } catch {
    console.error(
      `compose:verify: port ${port} (${service}) is taken; stop what listens there first`,
    );
    Deno.exit(1);
  }
}

/** Undo actions, run last-in first-out by the teardown, whatever happened before. */
const undo: { what: string; action: () => Promise<void> }[] = [];
const healthChecks = new AbortController();
const interruption = new AbortController();
let interrupted = false;
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(signal, () => {
    if (interrupted) return;
    interrupted = true;
    console.log(`compose:verify: ${signal}: stopping, then tearing down`);
    interruption.abort(new Error(`${signal}: interrupted`));
    healthChecks.abort();
    stopAllCommands();
  });
}

const engine: Engine = { ...found, env: {} };
const compose = (args: string[], options: RunOptions = {}) =>
  run(engine.compose[0]!, [...engine.compose.slice(1), "-p", project, "-f", composeFile, ...args], {
    cwd: root,
    ...options,
    env: { ...engine.env, ...options.env },
  });

console.log(`compose:verify: ${engine.description}, compose project ${project}`);
let failure: unknown;
let upStarted = false;
let downRegistered = false;
try {
  if (engine.kind === "podman") await preparePodman();
  await composeUp();
  await walkthrough({
    dialogsUrl: `http://127.0.0.1:${facts.hostPorts.dialogs}`,
    countersUrl: `http://127.0.0.1:${facts.hostPorts.counters}`,
    jwtSecret: facts.jwtSecret,
    signal: interruption.signal,
    exec: async (service, args, env = {}) => {
      const vars = Object.entries(env).flatMap(([k, v]) => ["-e", `${k}=${v}`]);
      return (await compose(["exec", "-T", ...vars, service, ...args], { timeoutSeconds: 60 }))
        .stdout;
    },
  }, runId);
} catch (err) {
  failure = err;
  if (!(err as { reported?: boolean }).reported) console.log(`FAIL ${(err as Error).message}`);
  if (err instanceof CommandError && err.output && !interrupted) console.log(indent(err.output));
  if (upStarted && !interrupted) await showUnhealthy();
} finally {
  await teardown();
}
console.log(`compose:verify: ${failure || interrupted ? "FAIL" : "PASS"} in ${elapsed()}`);
Deno.exit(failure || interrupted ? 1 : 0);

/** Podman: containers.conf, its Docker API socket, leftovers of earlier runs, the stand-in images. */
async function preparePodman() {
  if (await ensurePodmanUlimits()) {
    console.log("compose:verify: added default_ulimits to /etc/containers/containers.conf");
  }
  const work = await Deno.makeTempDir({ prefix: "compose-verify-" });
  undo.push({ what: "remove the work folder", action: () => removeWorkDir(work) });
  const all = new RegExp(`^${PROJECT_PREFIX}`);
  const old = await findOurs(all, RUN_LABEL);
  if (Object.values(old).some((ids) => ids.length > 0)) {
    await step("remove what an interrupted earlier run left", async () => {
      const left = await removeOurs(all, RUN_LABEL);
      if (left) throw new Error(left);
    });
  }
  await refuseToShadow(facts.images);
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
      const left = await removeOurs(project, `${RUN_LABEL}=${runId}`);
      if (left) throw new Error(left);
    },
  });
  await step("Debian bookworm base image (debootstrap, podman import)", async () => {
    const mirror = await buildBaseImage(work, runId);
    return `from ${mirror} in ${elapsed()}`;
  });
  undoComposeUp();
  const builds = await Promise.allSettled(facts.images.map(async (image) => {
    await step(`stand-in ${image}`, async () => {
      const t0 = performance.now();
      await buildStandin(image, root, work).catch((err) => {
        stopAllCommands(); // one failed: the others need not finish
        throw err;
      });
      return `built in ${((performance.now() - t0) / 1000).toFixed(1)} s`;
    });
    // The services' image needs only the Deno stand-in: build it while the others are built, and
    // `up --build` finds it in the cache.
    if (standinFolder(image) === "deno") {
      await step(`${engine.compose.join(" ")} build, beside the other stand-ins`, async () => {
        await compose(["build"]);
        return `at ${elapsed()}`;
      });
    }
  }));
  const failed = builds.find((b): b is PromiseRejectedResult => b.status === "rejected");
  if (failed) throw failed.reason;
}

/** Registers `down -v --rmi local` with the teardown, once. */
function undoComposeUp() {
  if (downRegistered) return;
  downRegistered = true;
  undo.push({
    what: `${engine.compose.join(" ")} down -v --rmi local`,
    action: async () => {
      await compose(["down", "-v", "--rmi", "local", "--remove-orphans"], { timeoutSeconds: 180 });
    },
  });
}

/** `up -d --build`, then waits until every service is healthy. */
async function composeUp() {
  undoComposeUp();
  let checks: Promise<void> | undefined;
  if (engine.kind === "podman") {
    checks = runPodmanHealthChecks(project, healthChecks.signal);
    undo.push({
      what: "stop the health checks",
      action: async () => {
        healthChecks.abort();
        await checks;
      },
    });
  }
  upStarted = true;
  await step(`${engine.compose.join(" ")} up -d --build`, async () => {
    await compose(["up", "-d", "--build"], { timeoutSeconds: 600 });
    return `at ${elapsed()}`;
  });
  await step("every service healthy", async () => {
    const deadline = Date.now() + HEALTHY_WITHIN_MS;
    for (;;) {
      const states = await projectStates(engine, project);
      const stopped = states.filter((s) => s.status !== "running");
      if (stopped.length) {
        throw new Error(
          `not running: ${stopped.map((s) => `${s.service} (${s.status})`).join(", ")}`,
        );
      }
      const waiting = [
        ...facts.services.filter((name) => !states.some((s) => s.service === name))
          .map((name) => `${name} (no container)`),
        ...states.filter((s) => s.health !== "healthy" && s.health !== "none")
          .map((s) => `${s.service} (${s.health})`),
      ];
      if (waiting.length === 0) return `${states.map((s) => s.service).join(", ")} at ${elapsed()}`;
      if (Date.now() > deadline || interrupted) {
        throw new Error(`not healthy after ${HEALTHY_WITHIN_MS / 1000} s: ${waiting.join(", ")}`);
      }
      await sleep(1000);
    }
  });
}

/** After a failure: each service that is not healthy, with the end of its log. */
async function showUnhealthy() {
  const states = await projectStates(engine, project).catch(() => []);
  for (const name of facts.services) {
    const state = states.find((s) => s.service === name);
    if (state && state.status === "running" && ["healthy", "none"].includes(state.health)) continue;
    console.log(`-- ${name}: ${state ? `${state.status}, ${state.health}` : "no container"}`);
    const logs = await compose(["logs", "--no-color", "--tail=25", name], { allowFailure: true })
      .catch(() => undefined);
    if (logs?.stdout.trim()) console.log(indent(logs.stdout));
  }
}

/** Runs every undo action, newest first, even when one of them fails. */
async function teardown() {
  const t0 = performance.now();
  let broken = false;
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
    const left = await findOurs(project, `${RUN_LABEL}=${runId}`);
    const count = Object.values(left).reduce((n, ids) => n + ids.length, 0);
    const ms = Math.round(performance.now() - t0);
    const verdict = count || broken ? "FAIL" : "PASS";
    const summary = `${count} containers, volumes, networks or images left`;
    console.log(`${verdict} teardown: ${summary}, podman service stopped (${ms} ms)`);
    if (count) failure ??= new Error("teardown left things behind");
  }
}

function indent(text: string): string {
  return text.trimEnd().split("\n").map((line) => `    ${line}`).join("\n");
}
