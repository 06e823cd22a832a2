/** Finds and removes what compose:verify made in podman: containers, volumes, networks, images. */
import { run } from "./commands.ts";

/** The compose project names of verification runs start with this. */
export const PROJECT_PREFIX = "composeverify";
/** Every image a run builds carries this label (the base image's, inherited by all built on it). */
export const RUN_LABEL = "compose-verify.run";

interface Listed {
  Id?: string;
  ID?: string;
  Name?: string;
  name?: string;
  Names?: string[];
  Labels?: Record<string, string> | null;
  labels?: Record<string, string> | null;
}

async function listJson(args: string[]): Promise<Listed[]> {
  const out = await run("podman", [...args, "--format", "json"], { allowFailure: true });
  return out.code === 0 ? JSON.parse(out.stdout || "[]") as Listed[] : [];
}

function ofProject(item: Listed, project: string | RegExp): boolean {
  const name = (item.Labels ?? item.labels ?? {})["com.docker.compose.project"] ?? "";
  return typeof project === "string" ? name === project : project.test(name);
}

/** What of ours is in podman: `project` is one run's project name, or a pattern for all runs. */
export async function findOurs(project: string | RegExp, imageLabel: string) {
  const containers = (await listJson(["ps", "-a"])).filter((c) => ofProject(c, project))
    .map((c) => c.Id ?? c.ID ?? "");
  const volumes = (await listJson(["volume", "ls"])).filter((v) => ofProject(v, project))
    .map((v) => v.Name ?? v.name ?? "");
  const networks = (await listJson(["network", "ls"])).filter((n) => ofProject(n, project))
    .map((n) => n.name ?? n.Name ?? "");
  const images = (await listJson(["images", "-a", "--filter", `label=${imageLabel}`]))
    .map((i) => i.Id ?? i.ID ?? "");
  return { containers, volumes, networks, images };
}

/** Removes what `findOurs` finds; returns a line naming what was left behind, if anything. */
export async function removeOurs(project: string | RegExp, imageLabel: string) {
  const found = await findOurs(project, imageLabel);
  const remove = (args: string[], ids: string[]) =>
    ids.length ? run("podman", [...args, ...ids], { allowFailure: true }) : undefined;
  await remove(["rm", "-f", "-v"], found.containers);
  await remove(["volume", "rm", "-f"], found.volumes);
  await remove(["network", "rm", "-f"], found.networks);
  // Pruning removes children before their parents; a second pass catches what a first one missed.
  for (let pass = 0; pass < 2; pass++) {
    await run("podman", ["image", "prune", "-a", "-f", "--filter", `label=${imageLabel}`], {
      allowFailure: true,
    });
  }
  await remove(["rmi", "-f"], (await findOurs(project, imageLabel)).images);
  const left = await findOurs(project, imageLabel);
  const parts = Object.entries(left).filter(([, ids]) => ids.length > 0)
    .map(([kind, ids]) => `${ids.length} ${kind}`);
  return parts.length ? `left behind in podman: ${parts.join(", ")}` : "";
}

/**
 * Deletes the run's working folder. debootstrap mounts /proc and /sys inside its target, and an
 * interrupted run can leave them mounted: unmount everything below first, and never cross into
 * another file system.
 */
export async function removeWorkDir(dir: string): Promise<void> {
  const mounts = (await Deno.readTextFile("/proc/mounts")).split("\n")
    .map((line) => line.split(" ")[1] ?? "")
    .filter((point) => point.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const point of mounts) await run("umount", ["-l", point], { allowFailure: true });
  await run("rm", ["-rf", "--one-file-system", dir], { allowFailure: true });
  if (await Deno.stat(dir).then(() => true, () => false)) throw new Error(`${dir} is still there`);
}

/** The full ids of every container of compose `project` in podman. */
export async function containerIds(project: string): Promise<string[]> {
  const out = await run("podman", [
    "ps",
    "-a",
    "-q",
    "--no-trunc",
    "--filter",
    `label=com.docker.compose.project=${project}`,
  ], { allowFailure: true });
  return out.stdout.split("\n").filter(Boolean);
}

/**
 * The conmon processes still running for `containers` (full ids). Podman 4.3 leaves one behind for
 * every exec session made through its API (`compose exec`, health checks), even after the
 * container is removed.
 */
export async function conmonsOf(containers: Set<string>): Promise<number[]> {
  const pids: number[] = [];
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    const argv = await Deno.readTextFile(`/proc/${entry.name}/cmdline`)
      .then((text) => text.split("\0"), () => [] as string[]);
    if (!argv[0]?.endsWith("conmon")) continue;
    const id = argv[argv.indexOf("-c") + 1];
    if (argv.includes("-c") && id && containers.has(id)) pids.push(Number(entry.name));
  }
  return pids;
}

/** Stops (SIGKILL, by pid) the conmon processes left for `containers`; returns how many remain. */
export async function stopConmons(containers: Set<string>): Promise<number> {
  for (const pid of await conmonsOf(containers)) {
    try {
      Deno.kill(pid, "SIGKILL");
    } catch { /* already gone */ }
  }
  for (let i = 0; i < 20; i++) {
    if ((await conmonsOf(containers)).length === 0) return 0;
    await new Promise((r) => setTimeout(r, 100));
  }
  return (await conmonsOf(containers)).length;
}
