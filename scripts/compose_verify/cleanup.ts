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
