import assert from "node:assert/strict";
import { runWrkSends } from "./wrk.ts";

interface Seen {
  method: string;
  path: string;
  auth: string | null;
  type: string | null;
  body: string;
}

/** A server that answers 202 to everything and remembers what it was sent. */
function recordingServer() {
  const seen: Seen[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    seen.push({
      method: req.method,
      path: new URL(req.url).pathname,
      auth: req.headers.get("Authorization"),
      type: req.headers.get("Content-Type"),
      body: await req.text(),
    });
    return new Response("{}", { status: 202 });
  });
  return { seen, server, url: `http://127.0.0.1:${server.addr.port}` };
}

const GROUP = "22222222-2222-4222-8222-222222222222";
const senders = [
  { token: "token-a", path: "/api/dialog/11111111-1111-4111-8111-111111111111/send" },
  { token: "token-b", path: `/api/groups/${GROUP}/send` },
];

Deno.test("runWrkSends() posts a JSON send from each sender to its path", async () => {
  const { seen, server, url } = recordingServer();
  try {
    const result = await runWrkSends(url, { connections: 2, seconds: 1, senders });
    assert.equal(result.errors, 0);
    assert.ok(seen.length > 10, `only ${seen.length} sends`);
    const pairs = new Set(seen.map((s) => `${s.auth} ${s.path}`));
    assert.deepEqual([...pairs].sort(), [
      `Bearer token-a ${senders[0]!.path}`,
      `Bearer token-b ${senders[1]!.path}`,
    ]);
    for (const s of seen) {
      assert.equal(s.method, "POST");
      assert.equal(s.type, "application/json");
      assert.deepEqual(JSON.parse(s.body), { text: "bench" });
    }
  } finally {
    await server.shutdown();
  }
});

Deno.test("runWrkSends() with a mean delay offers about connections / delay sends per second", async () => {
  const { seen, server, url } = recordingServer();
  try {
    // 4 connections pausing 200 ms on average: about 20 sends a second, 40 in 2 s.
    await runWrkSends(url, { connections: 4, seconds: 2, senders, meanDelayMs: 200 });
    assert.ok(seen.length >= 20 && seen.length <= 80, `${seen.length} sends in 2 s`);
  } finally {
    await server.shutdown();
  }
});
