/** What compose:verify reads from docker-compose.yml and the Dockerfiles it builds. */
import { parse } from "yaml";

interface ComposeService {
  image?: string;
  build?: string | { context?: string; dockerfile?: string };
  ports?: string[];
  environment?: Record<string, string>;
  healthcheck?: { test?: string[] };
}

/** The parts of a compose file the verification needs. */
export interface ComposeFacts {
  /** Service names in file order. */
  services: string[];
  /** Images the stack runs or builds from, fully qualified (docker.io/library/postgres:16). */
  images: string[];
  /** The host port published for each service that publishes one. */
  hostPorts: Record<string, number>;
  /** The JWT_SECRET the services get: the environment's, else the file's default. */
  jwtSecret: string;
}

/** Qualifies an image reference the way Docker does: `postgres:16` → `docker.io/library/postgres:16`. */
function qualifyImage(ref: string): string {
  const [first, ...rest] = ref.split("/");
  if (rest.length > 0 && (first!.includes(".") || first!.includes(":") || first === "localhost")) {
    return ref;
  }
  return rest.length === 0 ? `docker.io/library/${ref}` : `docker.io/${ref}`;
}

/** Reads `file` (docker-compose.yml) and the Dockerfiles of the services it builds. */
export async function readComposeFacts(file: string): Promise<ComposeFacts> {
  const dir = file.replace(/[^/]*$/, "");
  const doc = parse(await Deno.readTextFile(file)) as { services: Record<string, ComposeService> };
  const images = new Set<string>();
  const hostPorts: Record<string, number> = {};
  let jwtSecret = "";
  for (const [name, service] of Object.entries(doc.services)) {
    if (service.image) images.add(qualifyImage(service.image));
    if (service.build) {
      const build = typeof service.build === "string" ? { context: service.build } : service.build;
      const dockerfile = `${dir}${build.context ?? "."}/${build.dockerfile ?? "Dockerfile"}`;
      for (const image of await baseImages(dockerfile)) images.add(qualifyImage(image));
    }
    const published = service.ports?.[0]?.split(":");
    if (published && published.length >= 2) hostPorts[name] = Number(published.at(-2));
    const secret = service.environment?.JWT_SECRET;
    if (secret && !jwtSecret) {
      const fallback = /^\$\{JWT_SECRET:-(.*)\}$/.exec(secret)?.[1];
      jwtSecret = fallback === undefined ? secret : Deno.env.get("JWT_SECRET") || fallback;
    }
  }
  return { services: Object.keys(doc.services), images: [...images], hostPorts, jwtSecret };
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
