import assert from "node:assert/strict";
import { readSse, type SseEvent, sseParser } from "./sse.ts";

const STREAM = ': heartbeat\n\nevent: counters\nid: 3\ndata: {"total":1}\n\n' +
  'event: counters\r\nid: 4\r\ndata: {"total":2,\r\ndata: "x":1}\r\n\r\n' +
  "data: plain\n\n";

const EXPECTED: SseEvent[] = [
  { event: "counters", id: "3", data: '{"total":1}' },
  { event: "counters", id: "4", data: '{"total":2,\n"x":1}' },
  { event: "message", id: "4", data: "plain" },
];

Deno.test("sseParser() reads events, skips comments, and keeps the last id", () => {
  assert.deepEqual(sseParser().push(STREAM), EXPECTED);
});

Deno.test("sseParser() gives the same events whatever the chunks, even a split \\r\\n", () => {
  for (const size of [1, 2, 3, 7, 16]) {
    const parser = sseParser();
    const events: SseEvent[] = [];
    for (let i = 0; i < STREAM.length; i += size) {
      events.push(...parser.push(STREAM.slice(i, i + size)));
    }
    assert.deepEqual(events, EXPECTED, `chunks of ${size}`);
  }
});

Deno.test("sseParser() holds an event back until its blank line arrives", () => {
  const parser = sseParser();
  assert.deepEqual(parser.push("event: counters\ndata: 1\n"), []);
  assert.deepEqual(parser.push("\n"), [{ event: "counters", id: undefined, data: "1" }]);
});

Deno.test("readSse() calls back with each event as the server writes it, until aborted", async () => {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const auth = req.headers.get("Authorization");
    const body = new ReadableStream<Uint8Array>({
      async start(controller) {
        const enc = new TextEncoder();
        controller.enqueue(enc.encode(`event: counters\ndata: ${auth}\n\n`));
        await new Promise((r) => setTimeout(r, 50));
        controller.enqueue(enc.encode("event: counters\ndata: second\n\n"));
      },
    });
    return new Response(body, { headers: { "Content-Type": "text/event-stream" } });
  });
  const abort = new AbortController();
  const seen: string[] = [];
  try {
    const done = readSse(
      `http://127.0.0.1:${server.addr.port}/`,
      { Authorization: "Bearer t" },
      abort.signal,
      (event) => {
        seen.push(event.data);
        if (seen.length === 2) abort.abort();
      },
    );
    await done;
    assert.deepEqual(seen, ["Bearer t", "second"]);
  } finally {
    await server.shutdown();
  }
});

Deno.test("readSse() rejects an answer that is not 200", async () => {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => new Response("no", { status: 401 }),
  );
  try {
    await assert.rejects(
      readSse(`http://127.0.0.1:${server.addr.port}/s`, {}, new AbortController().signal, () => {}),
      /answered 401/,
    );
  } finally {
    await server.shutdown();
  }
});
