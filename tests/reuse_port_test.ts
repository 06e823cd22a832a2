/**
 * REUSE_PORT: two counters processes listen on one port (SO_REUSEPORT), each an instance of its
 * own; both serve, and a change is seen through either as soon as its reply is out.
 */
import assert from "node:assert/strict";
import { acceptedBy, countersOnSharedPort } from "../bench/parallel.ts";
import { withNoGroups } from "../testing/clients.ts";
import {
  bearer,
  call,
  integrationTest,
  TEST_JWT_SECRET,
  type TestEnv,
  waitFor,
} from "../testing/env.ts";
import { freePort } from "../testing/processes.ts";

/** A keep-alive HTTP/1.1 connection to 127.0.0.1:`port`, for reading `GET` answers on it. */
interface RawConnection {
  /** The pid of the process that accepted it. */
  pid: number;
  get(path: string, authorization: string): Promise<{ status: number; body: unknown }>;
  close(): void;
}

/** Reads one response (Content-Length bodies only) from `conn`, keeping what follows in `rest`. */
async function readResponse(conn: Deno.Conn, carry: { rest: Uint8Array }) {
  const decoder = new TextDecoder();
  let buffer = carry.rest;
  const more = async () => {
    const chunk = new Uint8Array(16_384);
    const n = await conn.read(chunk);
    if (n === null) throw new Error("connection closed before a whole response");
    const joined = new Uint8Array(buffer.length + n);
    joined.set(buffer);
    joined.set(chunk.subarray(0, n), buffer.length);
    buffer = joined;
  };
  let headEnd: number;
  while ((headEnd = decoder.decode(buffer).indexOf("\r\n\r\n")) < 0) await more();
  const head = decoder.decode(buffer.subarray(0, headEnd));
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1]);
  const length = Number(/^content-length:\s*(\d+)/im.exec(head)?.[1] ?? 0);
  while (buffer.length < headEnd + 4 + length) await more();
  const body = decoder.decode(buffer.subarray(headEnd + 4, headEnd + 4 + length));
  carry.rest = buffer.subarray(headEnd + 4 + length);
  return { status, body: body ? JSON.parse(body) : null };
}

/** Opens connections to `port` until each of `pids` accepted one; closes the others. */
async function oneConnectionEach(port: number, pids: number[]): Promise<RawConnection[]> {
  const found = new Map<number, RawConnection>();
  for (let attempt = 0; attempt < 200 && found.size < pids.length; attempt++) {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const pid = await waitFor(
      () => acceptedBy(pids, port, (conn.localAddr as Deno.NetAddr).port),
      { what: "the accepting process", timeoutMs: 5_000 },
    );
    if (found.has(pid)) {
      conn.close();
      continue;
    }
    const carry = { rest: new Uint8Array() };
    found.set(pid, {
      pid,
      async get(path, authorization) {
        const request = `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
          `Authorization: ${authorization}\r\n\r\n`;
        await conn.write(new TextEncoder().encode(request));
        return await readResponse(conn, carry);
      },
      close: () => conn.close(),
    });
  }
  assert.equal(found.size, pids.length, "every process accepted a connection");
  return [...found.values()];
}

function countersProcesses(env: TestEnv, port: number, n: number) {
  return Array.from({ length: n }, (_, i) =>
    countersOnSharedPort({
      name: `counters-${i + 1}`,
      port,
      env: {
        NATS_URL: env.natsUrl,
        NATS_SUBJECT_PREFIX: env.prefix,
        JWT_SECRET: TEST_JWT_SECRET,
        LOG_LEVEL: "warn",
        DATABASE_URL: env.countersDatabaseUrl,
        REDIS_URL: env.redisUrl,
        REDIS_KEY_PREFIX: env.redisPrefix,
        RECONCILE_INTERVAL_MS: "0",
      },
      logFile: `${Deno.makeTempDirSync()}/counters-${i + 1}.log`,
    }));
}

integrationTest(
  "REUSE_PORT: two counters processes on one port both serve, and a change is seen through " +
    "either once its send is committed",
  async (env) => {
    const dialogs = await env.startDialogs();
    const port = freePort();
    const counters = countersProcesses(env, port, 2);
    const connections: RawConnection[] = [];
    try {
      for (const c of counters) await c.start();
      connections.push(...await oneConnectionEach(port, counters.map((c) => c.pid!)));
      const a = crypto.randomUUID(), b = crypto.randomUUID();
      const auth = await bearer(b);
      // Both hold b's counters in memory before the changes.
      for (const conn of connections) {
        const read = await conn.get("/api/counters", auth);
        assert.equal(read.status, 200, JSON.stringify(read.body));
        assert.deepEqual(read.body, withNoGroups({ total: 0, dialogs: {} }));
      }
      for (let sent = 1; sent <= 3; sent++) {
        const res = await call(`${dialogs.url}/api/dialog/${b}/send`, {
          auth: await bearer(a),
          body: { text: `hello ${sent}` },
        });
        assert.equal(res.status, 202, JSON.stringify(res.body));
        await waitFor(async () => {
          const m = await call(`${dialogs.url}/api/messages/${res.body.messageId}`, {
            auth: await bearer(a),
          });
          return m.body?.status === "committed";
        }, { what: `send ${sent} committed` });
        // Committed: counters published its reply, so no instance serves the older count.
        for (const conn of connections) {
          const read = await conn.get("/api/counters", auth);
          assert.deepEqual(
            read.body,
            withNoGroups({ total: sent, dialogs: { [a]: sent } }),
            `process ${conn.pid} after send ${sent}`,
          );
        }
      }
    } finally {
      for (const conn of connections) conn.close();
      await Promise.all(counters.map((c) => c.terminate()));
    }
  },
);
