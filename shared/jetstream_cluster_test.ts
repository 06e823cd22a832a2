/**
 * NATS_URL with several servers and NATS_STREAM_REPLICAS, against a private three-node JetStream
 * cluster (three local nats-server processes on free ports, own store dirs, routes to all three).
 */
import assert from "node:assert/strict";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connectNats, ensureStreams, streamNames } from "./jetstream.ts";
import { findBinary, freePort, managedProcess } from "../testing/processes.ts";

Deno.test("ensureStreams() keeps NATS_STREAM_REPLICAS copies on a cluster reached through a comma-separated NATS_URL, and a publish survives the stream leader's kill -9", async () => {
  const binary = await findBinary("nats-server");
  const dir = await Deno.makeTempDir({ prefix: "nats-cluster-test-" });
  const nodes = [1, 2, 3].map((i) => ({
    name: `node-${i}`,
    client: freePort(),
    route: freePort(),
    monitor: freePort(),
  }));
  const routes = nodes.map((n) => `nats://127.0.0.1:${n.route}`).join(",");
  const servers = nodes.map((n) =>
    managedProcess({
      name: n.name,
      port: n.client,
      command: binary,
      args: [
        "-a",
        "127.0.0.1",
        "-p",
        String(n.client),
        "-m",
        String(n.monitor),
        "-js",
        "-sd",
        `${dir}/${n.name}`,
        "--server_name",
        n.name,
        "--cluster_name",
        "test",
        "--cluster",
        `nats://127.0.0.1:${n.route}`,
        "--routes",
        routes,
      ],
      logFile: `${dir}/${n.name}.log`,
    })
  );
  // A server that is not there comes first: the client goes on to the others.
  const url = [
    `nats://127.0.0.1:${freePort()}`,
    ...nodes.map((n) => `nats://127.0.0.1:${n.client}`),
  ].join(", ");
  let nc: Awaited<ReturnType<typeof connectNats>> | undefined;
  try {
    await Promise.all(servers.map((s) => s.start()));
    await untilHealthy(nodes.map((n) => n.monitor));
    nc = await connectNats(url, "cluster-test");
    const names = streamNames("CLUSTER_TEST", "cluster_test");
    await retrying(() => ensureStreams(nc!, names, 3));
    const jsm = await jetstreamManager(nc);
    for (const stream of [names.stream, names.deadLetterStream]) {
      const info = await jsm.streams.info(stream);
      assert.equal(info.config.num_replicas, 3, `${stream} asks for 3 replicas`);
      assert.ok(info.cluster?.leader, `${stream} has a leader`);
      assert.equal(
        info.cluster?.replicas?.length,
        2,
        `${stream} has 2 replicas besides its leader`,
      );
    }

    // A second start with the same setting changes nothing and fails nothing.
    await ensureStreams(nc, names, 3);

    const leader = (await jsm.streams.info(names.stream)).cluster!.leader!;
    await servers[nodes.findIndex((n) => n.name === leader)]!.kill();
    const js = jetstream(nc);
    const ack = await retrying(() => js.publish("cluster_test.dialogs.probe", "after the kill"));
    assert.equal(ack.stream, names.stream);
    const after = await retrying(() => jsm.streams.info(names.stream));
    assert.notEqual(after.cluster?.leader, leader, "another node leads the stream");
    assert.equal(after.state.messages, 1);
  } finally {
    await nc?.close();
    await Promise.all(servers.map((s) => s.kill()));
    await Deno.remove(dir, { recursive: true });
  }
});

/** Waits until every node's /healthz answers 200 (a JetStream meta leader is elected). */
async function untilHealthy(monitors: number[]): Promise<void> {
  for (const port of monitors) {
    await retrying(async () => {
      const res = await fetch(`http://127.0.0.1:${port}/healthz`);
      await res.body?.cancel();
      if (!res.ok) throw new Error(`/healthz on ${port}: ${res.status}`);
    });
  }
}

/** Retries `fn` for up to 30 s (elections take a few seconds), then throws its last error. */
async function retrying<T>(fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}
