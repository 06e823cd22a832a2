import assert from "node:assert/strict";
import { createSseStreams, nativeTrim } from "./sse_streams.ts";

const decoder = new TextDecoder();

/** Reads `body` until it ends or `ms` pass; returns the text and when each chunk came. */
async function readFor(body: ReadableStream<Uint8Array>, ms: number) {
  const reader = body.getReader();
  const chunks: { at: number; text: string }[] = [];
  const started = performance.now();
  let ended = false;
  const deadline = new Promise<"time">((r) => setTimeout(() => r("time"), ms));
  for (;;) {
    const next = await Promise.race([reader.read(), deadline]);
    if (next === "time") break;
    if (next.done) {
      ended = true;
      break;
    }
    chunks.push({ at: performance.now() - started, text: decoder.decode(next.value) });
  }
  if (!ended) await reader.cancel();
  return { chunks, ended, text: chunks.map((c) => c.text).join("") };
}

Deno.test("createSseStreams(): a quiet stream gets a heartbeat comment, never more than heartbeatMs apart", async () => {
  const shutdown = new AbortController();
  const streams = createSseStreams({ heartbeatMs: 200, shutdown: shutdown.signal });
  const stream = streams.open({ onEnd: () => {} });
  stream.write("event: counters\nid: 1\ndata: {}\n\n");
  const { chunks } = await readFor(stream.body, 1_000);
  assert.equal(chunks[0]!.text, "event: counters\nid: 1\ndata: {}\n\n");
  const beats = chunks.slice(1);
  assert.ok(beats.length >= 4, `${beats.length} heartbeats in 1 s`);
  assert.ok(beats.every((b) => b.text === ": heartbeat\n\n"));
  const gaps = beats.map((b, i) => b.at - (chunks[i]!.at));
  assert.ok(gaps.every((gap) => gap <= 200 + 40), `gaps ${gaps.map(Math.round)}`);
  assert.equal(streams.size, 0, "the cancelled stream is released");
});

Deno.test("createSseStreams(): a client that goes away releases its stream at once and ends it once", async () => {
  const shutdown = new AbortController();
  const streams = createSseStreams({ heartbeatMs: 15_000, shutdown: shutdown.signal });
  let ends = 0;
  const all = Array.from({ length: 100 }, () => streams.open({ onEnd: () => ends++ }));
  assert.equal(streams.size, 100);
  await Promise.all(all.map((s) => s.body.cancel()));
  assert.equal(streams.size, 0);
  assert.equal(ends, 100);
  all[0]!.end();
  all[0]!.write("ignored");
  assert.equal(ends, 100, "ending again does nothing");
});

Deno.test("createSseStreams(): a stream ends with a last word when its token expires", async () => {
  const shutdown = new AbortController();
  const streams = createSseStreams({ heartbeatMs: 15_000, shutdown: shutdown.signal });
  let ended = false;
  const stream = streams.open({ expiresAt: Date.now() + 300, onEnd: () => ended = true });
  const read = await readFor(stream.body, 2_000);
  assert.ok(read.ended, "the body ended");
  assert.equal(read.text, ": token expired\n\n");
  assert.ok(read.chunks[0]!.at >= 250 && read.chunks[0]!.at < 700, `${read.chunks[0]!.at} ms`);
  assert.ok(ended);
  assert.equal(streams.size, 0);
});

Deno.test("createSseStreams(): shutdown ends every open stream and opens none after", async () => {
  const shutdown = new AbortController();
  const streams = createSseStreams({ heartbeatMs: 15_000, shutdown: shutdown.signal });
  let ends = 0;
  const open = Array.from({ length: 10 }, () => streams.open({ onEnd: () => ends++ }));
  shutdown.abort();
  assert.equal(streams.size, 0);
  assert.equal(ends, 10);
  for (const s of open) assert.ok((await readFor(s.body, 100)).ended);
  const late = streams.open({ onEnd: () => ends++ });
  assert.ok(late.ended);
  assert.equal(ends, 11);
  assert.ok((await readFor(late.body, 100)).ended);
});

Deno.test("createSseStreams(): a client that reads nothing while events pile up is ended", () => {
  const shutdown = new AbortController();
  const streams = createSseStreams({ heartbeatMs: 15_000, shutdown: shutdown.signal });
  let ended = false;
  const stream = streams.open({ onEnd: () => ended = true });
  for (let i = 0; i < 1_000 && !ended; i++) stream.write(`event: counters\nid: ${i}\ndata: {}\n\n`);
  assert.ok(ended, "the stream ended");
  assert.equal(streams.size, 0);
});

Deno.test("createSseStreams(): memory is returned once after many streams were released, not per stream", async () => {
  const shutdown = new AbortController();
  let returned = 0;
  const streams = createSseStreams({
    heartbeatMs: 15_000,
    shutdown: shutdown.signal,
    returnMemory: () => returned++,
    returnAfterReleased: 10,
    returnQuietMs: 20,
  });
  const cancel = (n: number) =>
    Promise.all(Array.from({ length: n }, () => streams.open({ onEnd: () => {} }).body.cancel()));
  await cancel(9);
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(returned, 0, "fewer than 10 released");
  await cancel(16);
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(returned, 1, "one return for a burst of releases");
  await cancel(10);
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(returned, 2, "counted again from the last return");
  shutdown.abort();
});

Deno.test("nativeTrim() calls glibc's malloc_trim where this process may", () => {
  const trim = nativeTrim();
  if (
    Deno.build.os === "linux" && Deno.permissions.querySync({ name: "ffi" }).state === "granted"
  ) {
    assert.ok(trim, "glibc's malloc_trim is found");
    trim();
  } else assert.equal(trim, undefined);
});
