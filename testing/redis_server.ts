/**
 * A private redis-server with snapshots, for chaos runs and tests: flush it, keep a snapshot, restart
 * it from an older snapshot, make it refuse writes. Never the shared Redis on 6379.
 */
import { Redis } from "ioredis";
import { findBinary, freePort, type ManagedProcess, managedProcess } from "./processes.ts";

/** A running private Redis. */
export interface PrivateRedis extends ManagedProcess {
  /** `redis://127.0.0.1:<port>`. */
  url: string;
  /** Where its dump.rdb, snapshot copies and log are. */
  dir: string;
  /** FLUSHALL: every key gone, the process keeps running. */
  flushAll(): Promise<void>;
  /** SAVE now and keep a copy of the snapshot; returns the copy's path. */
  saveSnapshot(): Promise<string>;
  /** kill -9, put `snapshot` (a path from saveSnapshot) back as dump.rdb, start: Redis goes back in time. */
  restartFromSnapshot(snapshot: string): Promise<void>;
  /** maxmemory 1 byte with noeviction: every write answers OOM, reads still work. */
  refuseWrites(): Promise<void>;
  /** Back to no memory limit. */
  acceptWrites(): Promise<void>;
  /** A command on a short-lived connection (e.g. `["DBSIZE"]`). */
  command(args: string[]): Promise<unknown>;
}

/** Starts a redis-server on a free port keeping its snapshots (dump.rdb) in `dir`. */
export async function startPrivateRedis(dir: string): Promise<PrivateRedis> {
  await Deno.mkdir(dir, { recursive: true });
  const port = freePort();
  const url = `redis://127.0.0.1:${port}`;
  const proc = managedProcess({
    name: "redis-server",
    port,
    command: await findBinary("redis-server"),
    args: [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      // Snapshots like a stock redis.conf's, only more often; a restart loads the last one.
      "--save",
      "10 1",
      "--appendonly",
      "no",
      "--dbfilename",
      "dump.rdb",
      "--dir",
      dir,
    ],
    logFile: `${dir}/redis.log`,
  });
  let snapshots = 0;
  const command = async (args: string[]) => {
    const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    client.on("error", () => {});
    try {
      await client.connect();
      return await client.call(args[0]!, ...args.slice(1));
    } finally {
      client.disconnect();
    }
  };
  const redis: PrivateRedis = Object.assign(proc, {
    url,
    dir,
    command,
    async flushAll() {
      await command(["FLUSHALL"]);
    },
    async saveSnapshot() {
      await command(["SAVE"]);
      const copy = `${dir}/snapshot-${++snapshots}.rdb`;
      await Deno.copyFile(`${dir}/dump.rdb`, copy);
      return copy;
    },
    async restartFromSnapshot(snapshot: string) {
      await proc.kill();
      await Deno.copyFile(snapshot, `${dir}/dump.rdb`);
      await proc.start();
    },
    async refuseWrites() {
      await command(["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
      await command(["CONFIG", "SET", "maxmemory", "1"]);
    },
    async acceptWrites() {
      await command(["CONFIG", "SET", "maxmemory", "0"]);
    },
  });
  await redis.start();
  return redis;
}
