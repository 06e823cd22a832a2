/** A private NATS JetStream cluster of local nats-server processes, for chaos runs and tests. */
import { jetstreamManager } from "@nats-io/jetstream";
import { connectNats } from "../shared/jetstream.ts";
import {
  findBinary,
  freePort,
  type ManagedProcess,
  managedProcess,
  waitForHttp,
} from "./processes.ts";

/** One node of the cluster. */
export interface NatsNode extends ManagedProcess {
  /** Its `server_name`, as JetStream reports a stream's leader. */
  serverName: string;
  /** `nats://127.0.0.1:<client port>`. */
  url: string;
  monitorPort: number;
}

/** A running cluster. */
export interface NatsCluster {
  nodes: NatsNode[];
  /** Every node's client URL separated by commas: what `NATS_URL` takes. */
  url: string;
  /** The node that leads `stream` now (after an election settles), or undefined when none does. */
  streamLeader(stream: string, timeoutMs?: number): Promise<NatsNode | undefined>;
  /** Resolves when every running node reports JetStream healthy. */
  healthy(timeoutMs?: number): Promise<void>;
  /** Kills every node (SIGKILL). */
  stop(): Promise<void>;
}

/** Options of startNatsCluster(). */
export interface NatsClusterOptions {
  /** Nodes; 3 unless given. */
  size?: number;
  /** Where the store dirs, configuration files and logs go. */
  dir: string;
  /** The cluster's name; also the prefix of the server names. */
  name?: string;
}

/** Starts `size` nats-server processes on free ports, each with its own store, routed to each other. */
export async function startNatsCluster(options: NatsClusterOptions): Promise<NatsCluster> {
  const size = options.size ?? 3;
  if (!Number.isInteger(size) || size < 1) throw new Error(`a cluster needs 1 or more nodes`);
  const name = options.name ?? `c${crypto.randomUUID().slice(0, 8)}`;
  const binary = await findBinary("nats-server");
  const ports = Array.from({ length: size }, () => ({
    client: freePort(),
    route: freePort(),
    monitor: freePort(),
  }));
  const nodes: NatsNode[] = [];
  for (const [i, p] of ports.entries()) {
    const serverName = `${name}-n${i + 1}`;
    const store = `${options.dir}/${serverName}`;
    await Deno.mkdir(store, { recursive: true });
    const routes = ports.map((q) => `nats-route://127.0.0.1:${q.route}`);
    // 2.9.x: one cluster block with every route (its own is ignored), one store dir per node.
    const config = [
      `server_name: ${JSON.stringify(serverName)}`,
      `listen: "127.0.0.1:${p.client}"`,
      `http: "127.0.0.1:${p.monitor}"`,
      `jetstream { store_dir: ${JSON.stringify(store)} }`,
      `cluster {`,
      `  name: ${JSON.stringify(name)}`,
      `  listen: "127.0.0.1:${p.route}"`,
      `  routes: [${routes.map((r) => JSON.stringify(r)).join(", ")}]`,
      `}`,
    ].join("\n");
    const configFile = `${options.dir}/${serverName}.conf`;
    await Deno.writeTextFile(configFile, config + "\n");
    const proc = managedProcess({
      name: serverName,
      port: p.client,
      command: binary,
      args: ["-c", configFile],
      logFile: `${options.dir}/${serverName}.log`,
    });
    nodes.push(Object.assign(proc, {
      serverName,
      url: `nats://127.0.0.1:${p.client}`,
      monitorPort: p.monitor,
    }));
  }
  const cluster: NatsCluster = {
    nodes,
    url: nodes.map((n) => n.url).join(","),
    async streamLeader(stream, timeoutMs = 15_000) {
      const nc = await connectNats(cluster.url, "nats-cluster-leader");
      try {
        const deadline = Date.now() + timeoutMs;
        while (Date.now() < deadline) {
          try {
            // Even the account info may time out while an election is under way.
            const jsm = await jetstreamManager(nc, { timeout: 2_000 });
            const info = await jsm.streams.info(stream);
            const leader = info.cluster?.leader;
            const node = nodes.find((n) => n.serverName === leader);
            if (node) return node;
          } catch { /* an election is under way */ }
          await new Promise((r) => setTimeout(r, 200));
        }
        return undefined;
      } finally {
        await nc.close();
      }
    },
    async healthy(timeoutMs = 30_000) {
      // /healthz answers 200 once the node's JetStream is current with the meta leader.
      await Promise.all(
        nodes.filter((n) => n.running).map((n) =>
          waitForHttp(`http://127.0.0.1:${n.monitorPort}/healthz`, timeoutMs)
        ),
      );
    },
    async stop() {
      await Promise.all(nodes.map((n) => n.kill().catch(() => {})));
    },
  };
  try {
    await Promise.all(nodes.map((n) => n.start()));
    await cluster.healthy();
  } catch (err) {
    await cluster.stop();
    throw err;
  }
  return cluster;
}
