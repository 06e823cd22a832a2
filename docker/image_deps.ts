/**
 * Installs the production image's dependencies: only the packages the copied sources import.
 *
 * deno.lock also pins what only the tests and tools use (testcontainers, playwright-core: about
 * 60 MB), and Deno installs every package of a lock file, also for `deno install --entrypoint`. So,
 * in the image only: drop the deno.json imports no copied source names, let `deno install
 * --entrypoint` cut deno.lock down to the rest, and fail when that resolved anything deno.lock did
 * not pin, so the image stays reproducible.
 *
 * Usage (in the image's working directory): deno run --no-config --no-lock --allow-read
 * --allow-write --allow-run docker/image_deps.ts <entry point>…
 */

/** The parts of deno.lock this script reads. */
export interface Lock {
  npm?: Record<string, { integrity?: string }>;
}

/** The module specifiers `source` imports or re-exports, statically or dynamically. */
export function importedSpecifiers(source: string): string[] {
  const found: string[] = [];
  const patterns = [
    /\bfrom\s+["']([^"']+)["']/g,
    /\bimport\s+["']([^"']+)["']/g,
    /\bimport\(\s*["']([^"']+)["']\s*\)/g,
  ];
  for (const pattern of patterns) {
    for (const match of source.matchAll(pattern)) found.push(match[1]!);
  }
  return found;
}

/** The keys of an import map that one of `specifiers` uses (a key ending in `/` as a prefix). */
export function usedImports(
  imports: Record<string, string>,
  specifiers: Iterable<string>,
): Record<string, string> {
  const used = new Set(specifiers);
  return Object.fromEntries(
    Object.entries(imports).filter(([key]) =>
      key.endsWith("/") ? [...used].some((s) => s.startsWith(key)) : used.has(key)
    ),
  );
}

/** The npm packages of `after` that `before` does not pin with the same integrity. */
export function unpinnedPackages(before: Lock, after: Lock): string[] {
  return Object.entries(after.npm ?? {})
    .filter(([name, entry]) => before.npm?.[name]?.integrity !== entry.integrity)
    .map(([name]) => name);
}

async function typeScriptFiles(dir: string): Promise<string[]> {
  const files: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) files.push(...await typeScriptFiles(path));
    else if (entry.isFile && entry.name.endsWith(".ts")) files.push(path);
  }
  return files;
}

async function main(entryPoints: string[]): Promise<void> {
  if (!entryPoints.length) throw new Error("name the image's entry points");
  const config = JSON.parse(await Deno.readTextFile("deno.json"));
  const lockBefore: Lock = JSON.parse(await Deno.readTextFile("deno.lock"));
  const specifiers: string[] = [];
  for (const file of await typeScriptFiles(".")) {
    specifiers.push(...importedSpecifiers(await Deno.readTextFile(file)));
  }
  const imports = usedImports(config.imports ?? {}, specifiers);
  const dropped = Object.keys(config.imports ?? {}).filter((key) => !(key in imports));
  console.log(`image_deps: imports no copied source uses: ${dropped.join(", ") || "none"}`);
  await Deno.writeTextFile("deno.json", JSON.stringify({ ...config, imports }, null, 2) + "\n");

  const install = await new Deno.Command(Deno.execPath(), {
    args: ["install", "--entrypoint", ...entryPoints],
  }).spawn().status;
  if (!install.success) throw new Error(`deno install failed with exit code ${install.code}`);

  const lockAfter: Lock = JSON.parse(await Deno.readTextFile("deno.lock"));
  const unpinned = unpinnedPackages(lockBefore, lockAfter);
  if (unpinned.length) {
    throw new Error(`deno.lock does not pin these packages: ${unpinned.join(", ")}`);
  }
  console.log(
    `image_deps: ${Object.keys(lockAfter.npm ?? {}).length} of ` +
      `${Object.keys(lockBefore.npm ?? {}).length} npm packages of deno.lock installed`,
  );
}

if (import.meta.main) {
  try {
    await main(Deno.args);
  } catch (err) {
    console.error(`image_deps: ${err instanceof Error ? err.message : err}`);
    Deno.exit(1);
  }
}
