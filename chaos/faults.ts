/**
 * The chaos run's faults: each a name and an injection, in an order that interleaves the kinds so even
 * a short run meets every one. One fault per target at a time; restarts finish in the background.
 */
import type { Sql } from "../shared/db.ts";
import type { NatsCluster } from "../testing/nats_cluster.ts";
import type { ManagedProcess } from "../testing/processes.ts";
import type { PrivateRedis } from "../testing/redis_server.ts";
import type { TcpProxy } from "../testing/tcp_proxy.ts";

/** A named fault. */
export type Fault = [kind: string, inject: () => Promise<void>];

/** What the faults act on. */
export interface FaultTargets {
  dialogs: ManagedProcess[];
  counters: ManagedProcess[];
  /** A single nats-server, or a cluster (then nodes are killed, the stream's leader among them). */
  nats: ManagedProcess | NatsCluster;
  redis: PrivateRedis;
  /** A Postgres connection with the right to terminate the services' backends. */
  admin: Sql;
  databases: string[];
  stream: string;
  /** Every fault of issue 12 (Redis from an older snapshot, refusing writes, stalls) when true. */
  full: boolean;
  /** Instances whose NATS connections go through proxies that can be cut. */
  natsLinks?: { name: string; proxies: TcpProxy[] }[];
  log: (line: string) => void;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Serialises work per target and remembers what is still running. */
export class FaultLocks {
  #running = new Map<unknown, Promise<void>>();
  #stopped = new Set<ManagedProcess>();

  /** Runs `work` once no other fault holds `target`. */
  async exclusive(target: unknown, work: () => Promise<void>): Promise<void> {
    const before = this.#running.get(target);
    const run = (async () => {
      await before?.catch(() => {});
      await work();
    })();
    this.#running.set(target, run);
    try {
      await run;
    } finally {
      if (this.#running.get(target) === run) this.#running.delete(target);
    }
  }

  /** Resolves when every fault started so far has finished. */
  async settled(): Promise<void> {
    while (this.#running.size) await Promise.allSettled([...this.#running.values()]);
  }

  /** SIGSTOP `p` for `ms`, then SIGCONT. */
  async stall(p: ManagedProcess, ms: number): Promise<void> {
    const pid = p.pid;
    if (pid === undefined) return;
    Deno.kill(pid, "SIGSTOP");
    this.#stopped.add(p);
    try {
      await sleep(ms);
    } finally {
      this.#stopped.delete(p);
      if (p.pid === pid) Deno.kill(pid, "SIGCONT");
    }
  }

  /** SIGCONT whatever is still stopped (when the run ends early). */
  resumeAll(): void {
    for (const p of this.#stopped) {
      try {
        if (p.pid !== undefined) Deno.kill(p.pid, "SIGCONT");
      } catch { /* gone */ }
    }
  }
}

/** Builds the run's faults in the order they are injected (cycled). */
export function buildFaults(t: FaultTargets, locks: FaultLocks): Fault[] {
  const restart = (p: ManagedProcess, downMs = 300 + 1_200 * Math.random()) =>
    locks.exclusive(p, async () => {
      await p.kill();
      await sleep(downMs);
      await p.start();
    });
  const kill = (p: ManagedProcess): Fault => [`kill -9 ${p.name}`, () => restart(p)];
  const instanceKills = [...t.dialogs, ...t.counters].map(kill);
  const killPostgres: Fault = ["kill postgres connections", async () => {
    await t.admin`select pg_terminate_backend(pid) from pg_stat_activity
                  where datname in ${t.admin(t.databases)} and pid <> pg_backend_pid()`;
  }];

  if (!t.full) {
    // The single-instance-era run: one nats-server restart, Redis stopped (it comes back empty).
    const nats = t.nats as ManagedProcess;
    return interleave(instanceKills, [
      ["restart nats-server", () => restart(nats)],
      ["stop and flush redis", () =>
        locks.exclusive(t.redis, async () => {
          await t.redis.kill();
          // Without its snapshot it comes back empty.
          await Deno.remove(`${t.redis.dir}/dump.rdb`).catch(() => {});
          await sleep(300 + 1_200 * Math.random());
          await t.redis.start();
        })],
      killPostgres,
    ]);
  }

  const cluster = t.nats as NatsCluster;
  // Snapshots taken at each turn; "older" is the one from three turns back.
  const snapshots: string[] = [];
  const snapshot = () =>
    locks.exclusive(t.redis, async () => {
      if (t.redis.running) snapshots.push(await t.redis.saveSnapshot());
    }).catch(() => {});
  const killNatsNode = (leader: boolean): Fault => [
    leader
      ? "kill -9 the NATS node leading the stream"
      : "kill -9 a NATS node not leading the stream",
    () =>
      locks.exclusive(cluster, async () => {
        const lead = await cluster.streamLeader(t.stream, 10_000);
        const others = cluster.nodes.filter((n) => n !== lead && n.running);
        const victim = leader ? lead : others[Math.floor(Math.random() * others.length)];
        if (!victim) {
          t.log(`chaos: no ${leader ? "leader" : "follower"} of ${t.stream} found; killed none`);
          return;
        }
        await victim.kill();
        await sleep(1_000 + 2_000 * Math.random());
        await victim.start();
        await cluster.healthy(30_000).catch(() => {});
      }),
  ];
  let stallTurn = 0;
  const instances = [...t.dialogs, ...t.counters];
  const others: Fault[] = [
    killNatsNode(true),
    ["flush redis (FLUSHALL)", () => locks.exclusive(t.redis, () => t.redis.flushAll())],
    killPostgres,
    ["restart redis from an older snapshot", () =>
      locks.exclusive(t.redis, async () => {
        const older = snapshots[Math.max(0, snapshots.length - 3)];
        if (!older) throw new Error("no snapshot yet");
        await t.redis.restartFromSnapshot(older);
      })],
    ["stall an instance (SIGSTOP 3 s)", () => {
      const p = instances[stallTurn++ % instances.length]!;
      return locks.exclusive(p, () => locks.stall(p, 3_000));
    }],
    ["redis refuses writes (maxmemory, 3 s)", () =>
      locks.exclusive(t.redis, async () => {
        await t.redis.refuseWrites();
        try {
          await sleep(3_000);
        } finally {
          await t.redis.acceptWrites();
        }
      })],
    killNatsNode(false),
  ];
  let dropTurn = 0;
  if (t.natsLinks?.length) {
    others.push(["drop an instance's NATS connection (2 s)", () => {
      const link = t.natsLinks![dropTurn++ % t.natsLinks!.length]!;
      return locks.exclusive(link, async () => {
        await Promise.all(link.proxies.map((p) => p.cut()));
        try {
          await sleep(2_000);
        } finally {
          await Promise.all(link.proxies.map((p) => p.restore()));
        }
      });
    }]);
  }
  return interleave(instanceKills, others).map(([kind, inject]) => [kind, async () => {
    await snapshot();
    await inject();
  }]);
}

// a1, b1, a2, b2, ... then the rest of the longer list.
function interleave(a: Fault[], b: Fault[]): Fault[] {
  const out: Fault[] = [];
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    if (a[i]) out.push(a[i]!);
    if (b[i]) out.push(b[i]!);
  }
  return out;
}
