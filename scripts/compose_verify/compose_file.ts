/** What compose:verify reads from the compose files and the Dockerfiles it builds. */
import { parse } from "yaml";

/** A compose service, as far as the verification and tests/compose_test.ts read it. */
export interface ComposeService {
  image?: string;
  build?: string | { context?: string; dockerfile?: string };
  command?: string[];
  ports?: string[];
  environment?: Record<string, string>;
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test?: string[] };
  profiles?: string[];
  volumes?: string[];
  [key: string]: unknown;
}

/** A compose file's services and named volumes. */
export interface ComposeDoc {
  services: Record<string, ComposeService>;
  volumes?: Record<string, unknown>;
}

/** A port a service publishes on the host. */
export interface PublishedPort {
  service: string;
  host: number;
  container: number;
}

/** The parts of a compose file the verification needs. */
export interface ComposeFacts {
  /** The services `up` starts (none with a profile), in file order. */
  services: string[];
  /** Images the stack runs or builds from, fully qualified (docker.io/library/postgres:16). */
  images: string[];
  /** Every port published on the host. */
  published: PublishedPort[];
  /** The JWT_SECRET the services get: the environment's, else the file's default. */
  jwtSecret: string;
  /** Services that start only with a profile (`up` here starts none of them), with their image. */
  profiled: { service: string; profiles: string[]; image?: string }[];
}

/** Qualifies an image reference the way Docker does: `postgres:16` → `docker.io/library/postgres:16`. */
function qualifyImage(ref: string): string {
  const [first, ...rest] = ref.split("/");
  if (rest.length > 0 && (first!.includes(".") || first!.includes(":") || first === "localhost")) {
    return ref;
  }
  return rest.length === 0 ? `docker.io/library/${ref}` : `docker.io/${ref}`;
}

/** The target a volume entry mounts at (`name:/data:ro` → `/data`). */
function volumeTarget(entry: string): string {
  return entry.split(":")[1] ?? entry;
}

/**
 * Merges `override` into `base` the way `docker compose -f base -f override` does for the keys this
 * project uses: environment, depends_on and labels merge by key; ports add up; volumes merge by
 * their mount point; every other key is replaced.
 */
export function mergeCompose(base: ComposeDoc, override: ComposeDoc): ComposeDoc {
  const services: Record<string, ComposeService> = { ...base.services };
  for (const [name, extra] of Object.entries(override.services ?? {})) {
    const merged: ComposeService = { ...services[name] };
    for (const [key, value] of Object.entries(extra)) {
      const before = merged[key];
      if (["environment", "depends_on", "labels"].includes(key) && before) {
        merged[key] = { ...(before as object), ...(value as object) };
      } else if (key === "ports" && before) {
        merged.ports = [...new Set([...(before as string[]), ...(value as string[])])];
      } else if (key === "volumes" && before) {
        const byTarget = new Map((before as string[]).map((v) => [volumeTarget(v), v]));
        for (const v of value as string[]) byTarget.set(volumeTarget(v), v);
        merged.volumes = [...byTarget.values()];
      } else {
        merged[key] = value;
      }
    }
    services[name] = merged;
  }
  return { services, volumes: { ...base.volumes, ...override.volumes } };
}

/** Reads and merges compose `files` in order (YAML anchors and `<<` merge keys allowed). */
export async function readCompose(files: string[]): Promise<ComposeDoc> {
  let doc: ComposeDoc = { services: {} };
  for (const file of files) {
    const next = parse(await Deno.readTextFile(file), { merge: true }) as ComposeDoc;
    doc = mergeCompose(doc, next);
  }
  return doc;
}

/** The services `up` starts when no profile is chosen. */
export function startedServices(doc: ComposeDoc): [string, ComposeService][] {
  return Object.entries(doc.services).filter(([, s]) => !s.profiles?.length);
}

/** Reads the compose `files` (merged in order) and the Dockerfiles of the services they build. */
export async function readComposeFacts(files: string[]): Promise<ComposeFacts> {
  const dir = files[0]!.replace(/[^/]*$/, "");
  const doc = await readCompose(files);
  const images = new Set<string>();
  const published: PublishedPort[] = [];
  let jwtSecret = "";
  const started = startedServices(doc);
  for (const [name, service] of started) {
    if (service.image) images.add(qualifyImage(service.image));
    if (service.build) {
      const build = typeof service.build === "string" ? { context: service.build } : service.build;
      const dockerfile = `${dir}${build.context ?? "."}/${build.dockerfile ?? "Dockerfile"}`;
      for (const image of await baseImages(dockerfile)) images.add(qualifyImage(image));
    }
    for (const port of service.ports ?? []) {
      const parts = String(port).split(":");
      if (parts.length < 2) continue;
      published.push({
        service: name,
        host: Number(parts.at(-2)),
        container: Number(parts.at(-1)),
      });
    }
    const secret = service.environment?.JWT_SECRET;
    if (secret && !jwtSecret) {
      const fallback = /^\$\{JWT_SECRET:-(.*)\}$/.exec(secret)?.[1];
      jwtSecret = fallback === undefined ? secret : Deno.env.get("JWT_SECRET") || fallback;
    }
  }
  const profiled = Object.entries(doc.services)
    .filter(([, s]) => s.profiles?.length)
    .map(([service, s]) => ({
      service,
      profiles: s.profiles!,
      ...(s.image ? { image: qualifyImage(s.image) } : {}),
    }));
  return {
    services: started.map(([name]) => name),
    images: [...images],
    published,
    jwtSecret,
    profiled,
  };
}

/** The images a Dockerfile's FROM lines name, leaving out its own stages. */
async function baseImages(dockerfile: string): Promise<string[]> {
  const stages = new Set<string>();
  const images: string[] = [];
  for (const line of (await Deno.readTextFile(dockerfile)).split("\n")) {
    const from = /^\s*FROM\s+(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?/i.exec(line);
    if (!from) continue;
    if (!stages.has(from[1]!)) images.push(from[1]!);
    if (from[2]) stages.add(from[2]);
  }
  return images;
}
