/**
 * The floor of (f): a bare `Deno.serve` that answers every GET with one `ReadableStream` it holds
 * open (a `counters` event first, then a heartbeat comment once a stream was quiet for
 * `SSE_HEARTBEAT_MS`, looked at every 250 ms as counters does, so the heartbeats of streams opened
 * at different times go out at different times), and pushes an event to a user's stream on
 * `POST /push/<userId>` (the user is the `sub` of the `access_token` that opened it, read
 * unverified). No Hono, no auth, no cache, no NATS: what an open stream and a pushed event cost on
 * this runtime before any counters code. `/metrics` answers the gauges bench/streams.ts reads.
 */
const port = Number(Deno.env.get("PORT") ?? 8093);
const heartbeatMs = Number(Deno.env.get("SSE_HEARTBEAT_MS") ?? 15_000);
const encoder = new TextEncoder();
const heartbeat = encoder.encode(": heartbeat\n\n");
const open = new Map<
  string,
  { controller: ReadableStreamDefaultController<Uint8Array>; lastWrite: number }
>();

setInterval(() => {
  const now = Date.now();
  for (const stream of open.values()) {
    if (now - stream.lastWrite < heartbeatMs - 250) continue;
    stream.controller.enqueue(heartbeat);
    stream.lastWrite = now;
  }
}, 250);

const event = (id: number) =>
  encoder.encode(`event: counters\nid: ${id}\ndata: {"total":${id}}\n\n`);

Deno.serve({ port, hostname: "127.0.0.1", onListen: () => {} }, (req) => {
  const url = new URL(req.url);
  const path = url.pathname;
  if (path === "/metrics") {
    const { rss, heapUsed } = Deno.memoryUsage();
    return new Response(
      `process_resident_memory_bytes ${rss}\nprocess_heap_used_bytes ${heapUsed}\n` +
        `counters_live_streams ${open.size}\n`,
    );
  }
  if (req.method === "POST" && path.startsWith("/push/")) {
    const stream = open.get(path.slice(6));
    stream?.controller.enqueue(event(Date.now()));
    if (stream) stream.lastWrite = Date.now();
    return new Response(null, { status: stream ? 202 : 404 });
  }
  const token = url.searchParams.get("access_token") ?? "";
  const payload = token.split(".")[1]?.replaceAll("-", "+").replaceAll("_", "/") ?? "";
  const n = String(JSON.parse(atob(payload.padEnd(Math.ceil(payload.length / 4) * 4, "="))).sub);
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      open.set(n, { controller, lastWrite: Date.now() });
      controller.enqueue(event(1));
    },
    cancel() {
      open.delete(n);
    },
  });
  return new Response(body, { headers: { "Content-Type": "text/event-stream" } });
});
