/** GET /api/counters/stream over real HTTP: server-sent events with both services and NATS real. */
import assert from "node:assert/strict";
import { withNoGroups } from "../testing/clients.ts";
import { bearer, call, integrationTest, type Service, waitFor } from "../testing/env.ts";

/** One server-sent block: an event, or only comments (a heartbeat). */
interface SseBlock {
  event?: string;
  id?: string;
  data?: string;
  comments: string[];
}

/** No block arrived in time. */
class StreamTimeout extends Error {}

/** Reads an event stream block by block; blocks are separated by a blank line. */
class SseReader {
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #decoder = new TextDecoder();
  #buffer = "";
  #blocks: SseBlock[] = [];
  #pending: Promise<ReadableStreamReadResult<Uint8Array>> | null = null;

  constructor(body: ReadableStream<Uint8Array>) {
    this.#reader = body.getReader();
  }

  /** The next block, or null when the server ended the stream; throws after `timeoutMs`. */
  async next(timeoutMs = 5_000): Promise<SseBlock | null> {
    const deadline = Date.now() + timeoutMs;
    while (this.#blocks.length === 0) {
      this.#pending ??= this.#reader.read();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<"timeout">((resolve) => {
        timer = setTimeout(() => resolve("timeout"), Math.max(0, deadline - Date.now()));
      });
      const result = await Promise.race([this.#pending, timeout]).finally(() =>
        clearTimeout(timer)
      );
      if (result === "timeout") {
        throw new StreamTimeout(`no server-sent block within ${timeoutMs} ms`);
      }
      this.#pending = null;
      if (result.done) return null;
      this.#buffer += this.#decoder.decode(result.value, { stream: true }).replaceAll("\r\n", "\n");
      let end: number;
      while ((end = this.#buffer.indexOf("\n\n")) >= 0) {
        const text = this.#buffer.slice(0, end);
        this.#buffer = this.#buffer.slice(end + 2);
        this.#blocks.push(parseBlock(text));
      }
    }
    return this.#blocks.shift()!;
  }

  /** The next `counters` event, skipping heartbeats. */
  async nextEvent(timeoutMs = 5_000): Promise<{ id: string; data: Counters }> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const block = await this.next(Math.max(1, deadline - Date.now()));
      assert.ok(block, "the stream ended");
      if (block.event === undefined && block.data === undefined) continue;
      assert.equal(block.event, "counters");
      assert.ok(block.id !== undefined, "every event has an id");
      return { id: block.id, data: JSON.parse(block.data ?? "") };
    }
  }

  /** Waits for a `counters` event whose data satisfies `accept`. */
  async eventWhere(accept: (c: Counters) => boolean, timeoutMs = 10_000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const event = await this.nextEvent(Math.max(1, deadline - Date.now()));
      if (accept(event.data)) return event;
    }
  }

  async cancel(): Promise<void> {
    await this.#reader.cancel().catch(() => {});
  }
}

function parseBlock(text: string): SseBlock {
  const block: SseBlock = { comments: [] };
  for (const line of text.split("\n")) {
    if (line.startsWith(":")) {
      block.comments.push(line.slice(1).trim());
      continue;
    }
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event" || field === "id") block[field] = value;
    else if (field === "data") {
      block.data = block.data === undefined ? value : `${block.data}\n${value}`;
    }
  }
  return block;
}

interface Counters {
  total: number;
  dialogs: Record<string, number>;
}

async function jwt(user: string): Promise<string> {
  return (await bearer(user)).replace(/^Bearer /, "");
}

/** Opens the stream of `user` with the token in the query, or with `headers` when given. */
async function openStream(service: Service, user: string, headers?: Record<string, string>) {
  const url = `${service.url}/api/counters/stream` +
    (headers?.Authorization ? "" : `?access_token=${await jwt(user)}`);
  const res = await fetch(url, { headers });
  if (res.status !== 200) assert.fail(`stream refused: ${res.status} ${await res.text()}`);
  assert.match(res.headers.get("Content-Type") ?? "", /^text\/event-stream/);
  return new SseReader(res.body!);
}

async function send(dialogs: Service, from: string, to: string): Promise<string> {
  const res = await call(`${dialogs.url}/api/dialog/${to}/send`, {
    auth: await bearer(from),
    body: { text: "hi" },
  });
  assert.equal(res.status, 202, JSON.stringify(res.body));
  return res.body.messageId;
}

integrationTest(
  "counters stream: opens with the caller's counters and sends a new event with a higher id " +
    "after each change",
  async (env) => {
    const dialogs = await env.startDialogs();
    const counters = await env.startCounters();
    const a = crypto.randomUUID(), b = crypto.randomUUID();
    const stream = await openStream(counters, b);
    try {
      const first = await stream.nextEvent();
      assert.deepEqual(first, {
        id: "0",
        data: withNoGroups({ total: 0, dialogs: {} }),
      });

      await send(dialogs, a, b);
      const second = await stream.nextEvent(10_000);
      assert.deepEqual(second.data, withNoGroups({ total: 1, dialogs: { [a]: 1 } }));
      assert.ok(Number(second.id) > Number(first.id), `id ${second.id} > ${first.id}`);

      await send(dialogs, a, b);
      const third = await stream.nextEvent(10_000);
      assert.deepEqual(third.data, withNoGroups({ total: 2, dialogs: { [a]: 2 } }));
      assert.ok(Number(third.id) > Number(second.id), `id ${third.id} > ${second.id}`);
    } finally {
      await stream.cancel();
    }
  },
);

integrationTest(
  "counters stream: heartbeat comments arrive at the configured interval",
  async (env) => {
    const counters = await env.startCounters({ overrides: { SSE_HEARTBEAT_MS: 200 } });
    const stream = await openStream(counters, crypto.randomUUID());
    try {
      await stream.nextEvent();
      const started = Date.now();
      for (let i = 0; i < 3; i++) {
        const block = await stream.next(1_500);
        assert.ok(block, "the stream ended");
        assert.equal(block.event, undefined, "nothing changed, so no event");
        assert.ok(block.comments.length > 0, "a heartbeat is a comment line");
      }
      const elapsed = Date.now() - started;
      assert.ok(elapsed >= 400 && elapsed < 1_500, `three heartbeats took ${elapsed} ms`);
    } finally {
      await stream.cancel();
    }
  },
);

integrationTest(
  "counters stream: every counters instance serves every user: a change applied by one " +
    "instance reaches a stream on another",
  async (env) => {
    const dialogs = await env.startDialogs();
    const one = await env.startCounters();
    const two = await env.startCounters();
    const a = crypto.randomUUID(), b = crypto.randomUUID();
    // Only one instance applies the change; both streams must see it.
    const onOne = await openStream(one, b);
    const onTwo = await openStream(two, b);
    try {
      assert.equal((await onOne.nextEvent()).data.total, 0);
      assert.equal((await onTwo.nextEvent()).data.total, 0);
      await send(dialogs, a, b);
      const expected = withNoGroups({ total: 1, dialogs: { [a]: 1 } });
      assert.deepEqual((await onOne.nextEvent(10_000)).data, expected);
      assert.deepEqual((await onTwo.nextEvent(10_000)).data, expected);
      // The streams may hear of the change before the counting instance logs it (its reply is
      // published, and its handler returns, after the caches and streams are current).
      const counted = () =>
        env.logs.filter((l) => l.service === "counters" && l.msg === "message counted");
      await waitFor(() => counted().length > 0, { what: "the change counted" });
      assert.equal(counted().length, 1, "exactly one instance applied the change");
    } finally {
      await onOne.cancel();
      await onTwo.cancel();
    }
  },
);

integrationTest(
  "counters stream: reconnecting with Last-Event-ID gets the current state",
  async (env) => {
    const dialogs = await env.startDialogs();
    const counters = await env.startCounters();
    const a = crypto.randomUUID(), b = crypto.randomUUID();
    const before = await openStream(counters, b);
    let oldId: string;
    try {
      oldId = (await before.nextEvent()).id;
    } finally {
      await before.cancel();
    }
    const id = await send(dialogs, a, b);
    await waitFor(async () => {
      const res = await call(`${dialogs.url}/api/messages/${id}`, { auth: await bearer(a) });
      return res.body?.status === "committed";
    }, { what: "the message to be committed" });

    const again = await openStream(counters, b, {
      Authorization: await bearer(b),
      "Last-Event-ID": oldId,
    });
    try {
      const first = await again.nextEvent();
      assert.deepEqual(first.data, withNoGroups({ total: 1, dialogs: { [a]: 1 } }));
      assert.ok(Number(first.id) > Number(oldId), `id ${first.id} > ${oldId}`);
    } finally {
      await again.cancel();
    }
  },
);

integrationTest(
  "counters stream: 401 without a token; the Authorization header works too",
  async (env) => {
    const counters = await env.startCounters();
    const me = crypto.randomUUID();
    const none = await call(`${counters.url}/api/counters/stream`);
    assert.equal(none.status, 401);
    assert.equal(none.headers.get("Content-Type"), "application/problem+json");
    const forged = await call(`${counters.url}/api/counters/stream?access_token=not.a.jwt`);
    assert.equal(forged.status, 401);
    // The query token is only for the stream (EventSource); other routes want the header.
    const elsewhere = await call(`${counters.url}/api/counters?access_token=${await jwt(me)}`);
    assert.equal(elsewhere.status, 401);

    const stream = await openStream(counters, me, { Authorization: await bearer(me) });
    try {
      assert.deepEqual(await stream.nextEvent(), {
        id: "0",
        data: withNoGroups({ total: 0, dialogs: {} }),
      });
    } finally {
      await stream.cancel();
    }
  },
);

integrationTest(
  "counters stream: a counters instance shuts down promptly while a stream is open",
  async (env) => {
    const counters = await env.startCounters();
    const stream = await openStream(counters, crypto.randomUUID());
    try {
      await stream.nextEvent();
      const started = Date.now();
      let timer: ReturnType<typeof setTimeout> | undefined;
      // A hanging stop() fails here instead of hanging the test (the finally then frees it).
      const outcome = await Promise.race([
        counters.stop().then(() => "stopped"),
        new Promise((resolve) => timer = setTimeout(() => resolve("still running"), 5_000)),
      ]).finally(() => clearTimeout(timer));
      const took = Date.now() - started;
      assert.equal(outcome, "stopped", `stop() still running after ${took} ms with a stream open`);
      let end: unknown;
      try {
        end = await stream.next(2_000);
      } catch (err) {
        end = err; // a reset connection also ends the stream
      }
      assert.ok(!(end instanceof StreamTimeout), "the server ended the stream");
      assert.ok(end === null || end instanceof Error, "no event after shutdown");
    } finally {
      await stream.cancel();
    }
  },
);

integrationTest(
  "counters stream: a stream ends by itself when the token that opened it expires",
  async (env) => {
    const counters = await env.startCounters({ overrides: { SSE_HEARTBEAT_MS: 500 } });
    const me = crypto.randomUUID();
    // exp is in whole seconds: this token expires 2 to 3 s from now.
    const stream = await openStream(counters, me, { Authorization: await bearer(me, 3) });
    try {
      await stream.nextEvent();
      const comments: string[] = [];
      for (;;) {
        const block = await stream.next(10_000);
        if (block === null) break;
        comments.push(...block.comments);
      }
      assert.equal(comments.at(-1), "token expired", "the last word says why");
      const gauge = await fetch(`${counters.url}/metrics`).then((r) => r.text());
      assert.match(gauge, /^counters_live_streams 0$/m, "the stream is closed on the server");
    } finally {
      await stream.cancel();
    }
  },
);

integrationTest(
  "counters stream: streams whose clients went away are released within 1 s, long before a " +
    "heartbeat",
  async (env) => {
    const counters = await env.startCounters({ overrides: { SSE_HEARTBEAT_MS: 15_000 } });
    const gauge = async () => {
      const text = await fetch(`${counters.url}/metrics`).then((r) => r.text());
      return Number(/^counters_live_streams (\d+)$/m.exec(text)?.[1]);
    };
    const streams = await Promise.all(
      Array.from({ length: 50 }, () => openStream(counters, crypto.randomUUID())),
    );
    await Promise.all(streams.map((s) => s.nextEvent()));
    assert.equal(await gauge(), 50);
    const closed = Date.now();
    await Promise.all(streams.map((s) => s.cancel()));
    await waitFor(async () => await gauge() === 0, {
      what: "every stream released",
      timeoutMs: 5_000,
    });
    const took = Date.now() - closed;
    assert.ok(took <= 1_000, `the streams were released ${took} ms after their clients closed`);
  },
);
