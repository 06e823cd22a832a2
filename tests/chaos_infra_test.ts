/** The chaos run's private servers: a three-node NATS JetStream cluster and a Redis with snapshots. */
import assert from "node:assert/strict";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connectNats } from "../shared/jetstream.ts";
import { startNatsCluster } from "../testing/nats_cluster.ts";
import { freePort, managedProcess } from "../testing/processes.ts";
import { startPrivateRedis } from "../testing/redis_server.ts";

/** Calls `fn` until it succeeds: a cluster API call may time out while a leader is being elected. */
async function eventually<T>(fn: () => Promise<T>, tries = 20): Promise<T> {
  for (let i = 1;; i++) {
    try {
      return await fn();
    } catch (err) {
      if (i >= tries) throw err;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

Deno.test({
  name:
    "startNatsCluster() runs three routed JetStream nodes; an R3 stream survives kill -9 of its leader and the node rejoins",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "nats-cluster-test-" });
    const cluster = await startNatsCluster({ dir });
    const nc = await connectNats(cluster.url, "nats-cluster-test");
    try {
      assert.equal(cluster.nodes.length, 3);
      assert.equal(new Set(cluster.nodes.map((n) => n.port)).size, 3);
      assert.equal(cluster.url.split(",").length, 3);
      await cluster.healthy();
      const jsm = await jetstreamManager(nc);
      await eventually(() =>
        jsm.streams.add({ name: "R3TEST", subjects: ["r3test.>"], num_replicas: 3 })
      );
      const js = jetstream(nc);
      await eventually(() => js.publish("r3test.a", "one", { msgID: "m1" }));
      const leader = await cluster.streamLeader("R3TEST");
      assert.ok(leader, "the stream has a leader");
      await leader.kill();
      assert.equal(leader.running, false);
      // The election takes a few seconds; publishes succeed again on the new leader.
      const newLeader = await cluster.streamLeader("R3TEST", 30_000);
      assert.ok(newLeader && newLeader !== leader, "another node leads after the kill");
      let ack;
      for (let i = 0; i < 50 && !ack; i++) {
        ack = await js.publish("r3test.a", "two", { msgID: "m2", timeout: 2_000 }).catch(() => {});
      }
      assert.ok(ack, "a publish succeeds after the election");
      const dup = await eventually(() => js.publish("r3test.a", "two", { msgID: "m2" }));
      assert.equal(dup.duplicate, true, "msgID dedupe still works");
      await leader.start();
      await cluster.healthy();
      assert.equal((await eventually(() => jsm.streams.info("R3TEST"))).state.messages, 2);
    } finally {
      await nc.close();
      await cluster.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "startPrivateRedis() flushes, goes back to an older snapshot on restart, and refuses writes until told otherwise",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "redis-private-test-" });
    const redis = await startPrivateRedis(dir);
    try {
      assert.notEqual(redis.port, 6379);
      await redis.command(["SET", "k", "old"]);
      const snapshot = await redis.saveSnapshot();
      await redis.command(["SET", "k", "new"]);
      await redis.command(["SAVE"]);
      const pid = redis.pid;
      await redis.restartFromSnapshot(snapshot);
      assert.notEqual(redis.pid, pid, "a new process");
      assert.equal(await redis.command(["GET", "k"]), "old");

      await redis.refuseWrites();
      await assert.rejects(redis.command(["SET", "k", "x"]), /OOM/);
      assert.equal(await redis.command(["GET", "k"]), "old", "reads still work");
      await redis.acceptWrites();
      assert.equal(await redis.command(["SET", "k", "x"]), "OK");

      await redis.flushAll();
      assert.equal(await redis.command(["DBSIZE"]), 0);
    } finally {
      await redis.kill();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("freePort() gives free 127.0.0.1 ports below the kernel's ephemeral range, where no outgoing connection takes them", () => {
  const [from] = Deno.readTextFileSync("/proc/sys/net/ipv4/ip_local_port_range").trim().split(
    /\s+/,
  );
  for (let i = 0; i < 50; i++) {
    const port = freePort();
    assert.ok(port < Number(from), `port ${port} is below the ephemeral range (from ${from})`);
    Deno.listen({ hostname: "127.0.0.1", port }).close();
  }
});

Deno.test("a managed process that exits before it serves fails its start at once, with the end of its log", async () => {
  const dir = await Deno.makeTempDir({ prefix: "managed-process-" });
  try {
    const proc = managedProcess({
      name: "early-exit",
      port: freePort(),
      command: "sh",
      args: ["-c", "echo 'cannot bind: address already in use' >&2; exit 3"],
      logFile: `${dir}/early-exit.log`,
    });
    const started = Date.now();
    await assert.rejects(proc.start(), (err: Error) => {
      assert.match(err.message, /early-exit exited with code 3 before it served/);
      assert.match(err.message, /cannot bind: address already in use/);
      return true;
    });
    assert.ok(Date.now() - started < 5_000, "not after the port wait's 20 s");
    assert.equal(proc.running, false);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
