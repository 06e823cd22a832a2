/**
 * One chaos run's world: its names, its private nats-server(s) and redis-server, its service
 * instances; started in steps and torn down whole, also when the run is interrupted.
 */
import { jetstreamManager } from "@nats-io/jetstream";
import postgres from "postgres";
import { quoteIdent } from "../shared/db.ts";
import { connectNats, streamNames } from "../shared/jetstream.ts";
import { type NatsCluster, startNatsCluster } from "../testing/nats_cluster.ts";
import {
  denoProcess,
  findBinary,
  freePort,
  type ManagedProcess,
  managedProcess,
} from "../testing/processes.ts";
import { type PrivateRedis, startPrivateRedis } from "../testing/redis_server.ts";
import { type Deployment, serviceEnv } from "../testing/services_env.ts";
import { startTcpProxy, type TcpProxy } from "../testing/tcp_proxy.ts";
import { FaultLocks } from "./faults.ts";

const SECRET = "chaos-secret-0123456789abcdef";

/** An instance whose NATS connection goes through proxies, one per node, that a fault can cut. */
export interface NatsLink {
  name: string;
  proxies: TcpProxy[];
}

/** Where one run lives: its names, folder and processes. */
export interface ChaosWorld {
  /** The JWT secret the services verify tokens with. */
  secret: string;
  /** Where the servers keep their stores and every process its log. */
  dir: string;
  instances: number;
  natsNodes: number;
  /** A NATS cluster with every fault of issue 12 (more than one node). */
  full: boolean;
  sagaTimeoutMs: number;
  databases: Record<"dialogs" | "counters", string>;
  databaseUrls: Record<"dialogs" | "counters", string>;
  prefix: string;
  stream: string;
  /** A Postgres connection that creates nothing but kills connections and drops the databases. */
  admin: postgres.Sql;
  locks: FaultLocks;
  /** The private servers, from the moment startServers begins. */
  servers?: Promise<Servers>;
  /** Every instance, each in its list before it starts. */
  dialogs: ManagedProcess[];
  counters: ManagedProcess[];
  natsLinks: NatsLink[];
  /** Set by the first tearDownWorld; later calls wait for it. */
  tornDown?: Promise<void>;
}

/** The run's private servers. */
export interface Servers {
  /** What NATS_URL takes: one server's URL, or every node's separated by commas. */
  natsUrl: string;
  /** The cluster, when the run has more than one node. */
  cluster?: NatsCluster;
  /** The nats-server processes: the single server or the cluster's nodes. */
  natsNodes: ManagedProcess[];
  redis: PrivateRedis;
}

/** The run's names and folder, from its options; nothing is started yet. */
export async function planWorld(
  options: { instances: number; natsCluster: number; sagaTimeoutMs?: number },
): Promise<ChaosWorld> {
  const full = options.natsCluster > 1;
  const id = crypto.randomUUID().replaceAll("-", "").slice(0, 10);
  const adminUrl = Deno.env.get("TEST_DATABASE_URL") ??
    "postgres://postgres@127.0.0.1:5432/postgres";
  const dbUrl = (name: string) =>
    Object.assign(new URL(adminUrl), { pathname: `/${name}` }).toString();
  const databases = { dialogs: `chaos_${id}_dialogs`, counters: `chaos_${id}_counters` };
  return {
    secret: SECRET,
    dir: await Deno.makeTempDir({ prefix: `chaos-${id}-` }),
    instances: options.instances,
    natsNodes: options.natsCluster,
    full,
    sagaTimeoutMs: options.sagaTimeoutMs ?? (full ? 8_000 : 30_000),
    databases,
    databaseUrls: { dialogs: dbUrl(databases.dialogs), counters: dbUrl(databases.counters) },
    prefix: `chaos${id}`,
    stream: `CHAOS${id}`,
    admin: postgres(adminUrl, { max: 2, onnotice: () => {} }),
    locks: new FaultLocks(),
    dialogs: [],
    counters: [],
    natsLinks: [],
  };
}

/** Starts the private nats-server (or cluster) and redis-server. */
export function startServers(world: ChaosWorld): Promise<Servers> {
  world.servers ??= (async () => {
    const cluster = world.full
      ? await startNatsCluster({ dir: `${world.dir}/nats`, size: world.natsNodes })
      : undefined;
    const natsNodes = cluster?.nodes ?? [await startNatsServer(world.dir)];
    try {
      const redis = await startPrivateRedis(`${world.dir}/redis`);
      return {
        natsUrl: cluster?.url ?? `nats://127.0.0.1:${natsNodes[0]!.port}`,
        cluster,
        natsNodes,
        redis,
      };
    } catch (err) {
      await Promise.all(natsNodes.map((p) => p.kill()));
      throw err;
    }
  })();
  return world.servers;
}

async function startNatsServer(dir: string): Promise<ManagedProcess> {
  const port = freePort();
  const nats = managedProcess({
    name: "nats-server",
    port,
    command: await findBinary("nats-server"),
    args: ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", `${dir}/nats`],
    logFile: `${dir}/nats.log`,
  });
  try {
    await nats.start();
  } catch (err) {
    await nats.kill();
    throw err;
  }
  return nats;
}

/**
 * Starts `instances` of each service: one of each first, so that the databases are created and
 * migrated once, then the rest; on a cluster, makes the streams R3.
 */
export async function startServices(
  world: ChaosWorld,
  servers: Servers,
  log: (line: string) => void,
): Promise<void> {
  const replicas = Math.min(world.natsNodes, 3);
  const deployment: Deployment = {
    natsUrl: servers.natsUrl,
    stream: world.stream,
    prefix: world.prefix,
    secret: world.secret,
    databaseUrls: world.databaseUrls,
    redisUrl: servers.redis.url,
  };
  // On a cluster, the first instance of each service reaches NATS through proxies, one per node,
  // so that its connection can be dropped while every server stays up.
  const natsUrlOf = (name: string, n: number) => {
    if (!servers.cluster || n !== 1) return servers.natsUrl;
    const proxies = servers.cluster.nodes.map((node) =>
      startTcpProxy({ hostname: "127.0.0.1", port: node.port })
    );
    world.natsLinks.push({ name, proxies });
    return proxies.map((p) => `nats://127.0.0.1:${p.port}`).join(",");
  };
  const service = (kind: "dialogs" | "counters", n: number): ManagedProcess =>
    denoProcess({
      name: `${kind}-${n}`,
      script: `${kind}/main.ts`,
      env: {
        ...serviceEnv(kind, deployment),
        NATS_URL: natsUrlOf(`${kind}-${n}`, n),
        // Read by the services once they know it; until then the run scales the streams itself below.
        NATS_STREAM_REPLICAS: String(replicas),
        // CHAOS_LOG_LEVEL=debug keeps what a drift's timeline needs (the services log warn by default).
        ...(Deno.env.get("CHAOS_LOG_LEVEL") ? { LOG_LEVEL: Deno.env.get("CHAOS_LOG_LEVEL")! } : {}),
        ...(kind === "dialogs" ? { SAGA_TIMEOUT_MS: String(world.sagaTimeoutMs) } : {}),
      },
      logFile: `${world.dir}/${kind}-${n}.log`,
      readyPath: "/health/live",
    });
  for (let n = 1; n <= world.instances; n++) {
    world.dialogs.push(service("dialogs", n));
    world.counters.push(service("counters", n));
  }
  await world.dialogs[0]!.start();
  await world.counters[0]!.start();
  await Promise.all(instances(world).map((p) => p.start()));
  if (servers.cluster) await replicate(servers.natsUrl, world.stream, world.prefix, replicas, log);
  log(`chaos: ${instances(world).map((p) => `${p.name} :${p.port}`).join(", ")}`);
}

/** Every instance of both services. */
export function instances(world: ChaosWorld): ManagedProcess[] {
  return [...world.dialogs, ...world.counters];
}

/** The instances' base URLs, by service. */
export function instanceUrls(world: ChaosWorld): Record<"dialogs" | "counters", string[]> {
  const url = (p: ManagedProcess) => `http://127.0.0.1:${p.port}`;
  return { dialogs: world.dialogs.map(url), counters: world.counters.map(url) };
}

/** Undoes every fault: each process running, the cluster healthy, Redis writable, links restored. */
export async function restoreWorld(world: ChaosWorld, servers: Servers): Promise<void> {
  for (const p of [...servers.natsNodes, servers.redis, ...instances(world)]) await p.start();
  await servers.cluster?.healthy();
  await servers.redis.acceptWrites();
  for (const link of world.natsLinks) for (const p of link.proxies) await p.restore();
}

/**
 * Stops every process the run started (also while its servers are still starting), drops its
 * databases and removes its folder unless CHAOS_KEEP_LOGS is set. Once: later calls wait for it.
 */
export function tearDownWorld(world: ChaosWorld): Promise<void> {
  world.tornDown ??= (async () => {
    world.locks.resumeAll();
    for (const link of world.natsLinks) {
      for (const p of link.proxies) await p.close().catch(() => {});
    }
    await Promise.all(instances(world).map((p) => p.terminate().catch(() => {})));
    const servers = await world.servers?.catch(() => undefined);
    await Promise.all(
      [...servers?.natsNodes ?? [], servers?.redis].map((p) => p?.kill().catch(() => {})),
    );
    // A fault under way may have restarted a process meanwhile.
    await killStragglers(world);
    for (const db of Object.values(world.databases)) {
      await world.admin.unsafe(`drop database if exists ${quoteIdent(db)} with (force)`)
        .catch(() => {});
    }
    await world.admin.end();
    if (!Deno.env.get("CHAOS_KEEP_LOGS")) {
      await Deno.remove(world.dir, { recursive: true }).catch(() => {});
    }
  })();
  return world.tornDown;
}

/** SIGKILLs every process of the run until none runs. */
async function killStragglers(world: ChaosWorld): Promise<void> {
  const servers = await world.servers?.catch(() => undefined);
  const all = [...instances(world), ...servers?.natsNodes ?? [], ...servers ? [servers.redis] : []];
  while (all.some((p) => p.running)) await Promise.all(all.map((p) => p.kill().catch(() => {})));
}

/**
 * On SIGINT or SIGTERM, tears the world down and exits 130 or 143: a run cut short is no pass.
 * Returns what removes the listeners, or, once a signal has come, waits for that exit.
 */
export function tearDownOnSignal(
  world: ChaosWorld,
  log: (line: string) => void,
): () => Promise<void> {
  let exiting: Promise<void> | undefined;
  const listeners = (["SIGINT", "SIGTERM"] as const).map((signal) => {
    const listener = () => {
      exiting ??= (async () => {
        log(`chaos: ${signal}; stopping every process the run started`);
        await tearDownWorld(world);
        // The run's steps go on until the exit: a fault may have restarted a process once more.
        await killStragglers(world);
        Deno.exit(signal === "SIGINT" ? 130 : 143);
      })();
    };
    Deno.addSignalListener(signal, listener);
    return [signal, listener] as const;
  });
  return async () => {
    // A step that failed because the signal stopped its processes waits here for the exit.
    if (exiting) await exiting;
    for (const [signal, listener] of listeners) Deno.removeSignalListener(signal, listener);
  };
}

/**
 * Makes the saga and dead-letter streams `replicas`-way (R3 on a cluster) and waits until every
 * consumer is too. Services that read NATS_STREAM_REPLICAS create them so; this covers those that don't.
 */
async function replicate(
  natsUrl: string,
  stream: string,
  prefix: string,
  replicas: number,
  log: (line: string) => void,
): Promise<void> {
  const nc = await connectNats(natsUrl, "chaos-replicate");
  try {
    const jsm = await jetstreamManager(nc);
    const names = streamNames(stream, prefix);
    for (const name of [names.stream, names.deadLetterStream]) {
      const info = await jsm.streams.info(name).catch(() => undefined);
      if (!info) continue;
      if (info.config.num_replicas !== replicas) {
        await jsm.streams.update(name, { num_replicas: replicas });
      }
      for await (const c of jsm.consumers.list(name)) {
        if ((c.config.num_replicas ?? 0) !== 0 && c.config.num_replicas !== replicas) {
          await jsm.consumers.update(name, c.name, { num_replicas: replicas });
        }
      }
    }
    // Scaling up takes an election; report the settled state.
    const deadline = Date.now() + 15_000;
    let info = await jsm.streams.info(names.stream);
    while (!info.cluster?.leader && Date.now() < deadline) {
      await sleep(250);
      info = await jsm.streams.info(names.stream);
    }
    const consumers: string[] = [];
    for await (const c of jsm.consumers.list(names.stream)) {
      consumers.push(
        `${c.name} (leader ${c.cluster?.leader}, ${c.cluster?.replicas?.length} peers)`,
      );
    }
    log(
      `chaos: stream ${names.stream} R${info.config.num_replicas} (leader ${info.cluster?.leader}, ` +
        `${info.cluster?.replicas?.length} peers); consumers ${consumers.join(", ")}`,
    );
  } finally {
    await nc.close();
  }
}

/** Resolves after `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
