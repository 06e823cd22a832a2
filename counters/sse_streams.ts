/**
 * The open server-sent event streams of one counters instance, kept cheap enough for ten thousand:
 *
 * - Each stream is one `ReadableStream` the response body reads, with its text pushed in (no
 *   TransformStream, writer and second stream per connection).
 * - The server cancels that stream as soon as the client's connection closes (Deno.serve does, read
 *   pending or not), which ends it at once: no heartbeat write is needed to notice.
 * - One timer serves every stream's heartbeat and token expiry, and one listener on the shutdown
 *   signal ends them all; no stream holds a timer, a promise race or a listener of its own.
 * - The heartbeat is encoded once: every stream is handed the same bytes, which the runtime only
 *   reads.
 * - A client that stops reading while its queue grows past MAX_QUEUED chunks is ended; it
 *   reconnects and gets the current state, so nothing it needed is lost.
 * - Most of an open stream's memory is the runtime's, outside the JavaScript heap (about 60 KB a
 *   stream on Deno 2.9: its HTTP connection and the channel that carries a ReadableStream to it),
 *   and glibc keeps what they free for reuse. Once many streams were released and none for a
 *   moment, `returnMemory` runs: by default glibc's `malloc_trim(0)`, which hands the freed pages
 *   back to the system, where the process may call it (`--allow-ffi`, glibc).
 */

/** Chunks a stream may hold unread before its client counts as gone. */
const MAX_QUEUED = 64;

/** The longest the sweep waits between two looks at the streams. */
const MAX_SWEEP_MS = 250;

/** Streams released since memory was last returned from which it is returned again. */
const RETURN_AFTER_RELEASED = 1_000;

/** How long no stream may have been released before memory is returned. */
const RETURN_QUIET_MS = 2_000;

const encoder = new TextEncoder();
const HEARTBEAT = encoder.encode(": heartbeat\n\n");

/** One open stream. */
export interface SseStream {
  /** The response body. */
  readonly body: ReadableStream<Uint8Array>;
  /** Queues `text` (whole SSE blocks); does nothing once the stream has ended. */
  write(text: string): void;
  /** Ends the stream, after a last comment line when `comment` is given. */
  end(comment?: string): void;
  readonly ended: boolean;
}

/** The open streams of this instance. */
export interface SseStreams {
  /**
   * A new open stream. `onEnd` runs once when it ends, whatever ended it (the client went away,
   * the token expired at `expiresAt` (ms since the epoch), shutdown, or `end()`).
   */
  open(options: { expiresAt?: number; onEnd: () => void }): SseStream;
  /** How many are open. */
  readonly size: number;
}

/** Options of the streams. */
export interface SseStreamsOptions {
  /** No stream goes longer than this without a write: a comment line is sent. */
  heartbeatMs: number;
  /** Ends every stream, and opens none after, once aborted. */
  shutdown: AbortSignal;
  now?: () => number;
  /**
   * Hands memory freed by released streams back to the system, once `returnAfterReleased` were
   * released (default 1,000) and none for `returnQuietMs` (default 2 s); by default
   * `nativeTrim()`, nothing where that is absent.
   */
  returnMemory?: (() => void) | undefined;
  returnAfterReleased?: number;
  returnQuietMs?: number;
}

/**
 * glibc's `malloc_trim(0)`, where this process may call it (`--allow-ffi`, Linux with glibc): the
 * free pages of the native heap go back to the system. Undefined elsewhere. It takes tens of ms
 * with thousands of released streams' memory to give back.
 */
export function nativeTrim(): (() => void) | undefined {
  if (Deno.build.os !== "linux") return undefined;
  if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") return undefined;
  try {
    const libc = Deno.dlopen("libc.so.6", {
      malloc_trim: { parameters: ["usize"], result: "i32" },
    });
    return () => void libc.symbols.malloc_trim(0n);
  } catch {
    return undefined; // not glibc
  }
}

interface Entry extends SseStream {
  ended: boolean;
  lastWrite: number;
  expiresAt: number;
  /** Queues `bytes`, which stay as they are (they may be queued on other streams too). */
  push(bytes: Uint8Array): void;
}

/** Creates the registry of open streams; see the module doc. */
export function createSseStreams(options: SseStreamsOptions): SseStreams {
  const { heartbeatMs, shutdown } = options;
  const now = options.now ?? Date.now;
  const sweepMs = Math.min(MAX_SWEEP_MS, Math.max(1, Math.floor(heartbeatMs / 4)));
  // A heartbeat is written one sweep early, so no gap between two writes exceeds heartbeatMs.
  const quietMs = heartbeatMs - sweepMs;
  const open = new Set<Entry>();
  let timer: ReturnType<typeof setInterval> | undefined;
  const returnMemory = "returnMemory" in options ? options.returnMemory : nativeTrim();
  const returnAfter = options.returnAfterReleased ?? RETURN_AFTER_RELEASED;
  const returnQuietMs = options.returnQuietMs ?? RETURN_QUIET_MS;
  let released = 0;
  let returnTimer: ReturnType<typeof setTimeout> | undefined;

  /** Counts a released stream; after enough, returns memory once releases pause. */
  function releasedOne() {
    if (returnMemory === undefined || shutdown.aborted || ++released < returnAfter) return;
    clearTimeout(returnTimer);
    returnTimer = setTimeout(() => {
      returnTimer = undefined;
      released = 0;
      returnMemory();
    }, returnQuietMs);
    Deno.unrefTimer(returnTimer);
  }

  function sweep() {
    const at = now();
    for (const entry of open) {
      if (at >= entry.expiresAt) entry.end("token expired");
      else if (at - entry.lastWrite >= quietMs) entry.push(HEARTBEAT);
    }
  }

  shutdown.addEventListener("abort", () => {
    clearTimeout(returnTimer);
    for (const entry of open) entry.end();
  }, { once: true });

  return {
    open({ expiresAt, onEnd }) {
      let controller!: ReadableStreamDefaultController<Uint8Array>;
      const body = new ReadableStream<Uint8Array>({
        start: (c) => void (controller = c),
        // The client went away (its connection closed) or the server stopped reading.
        cancel: () => finish(false),
      });
      const finish = (closeBody: boolean) => {
        if (entry.ended) return;
        entry.ended = true;
        open.delete(entry);
        if (open.size === 0 && timer !== undefined) {
          clearInterval(timer);
          timer = undefined;
        }
        if (closeBody) {
          try {
            controller.close();
          } catch { /* already closed or cancelled */ }
        }
        onEnd();
        releasedOne();
      };
      const entry: Entry = {
        body,
        ended: false,
        lastWrite: now(),
        expiresAt: expiresAt ?? Infinity,
        write(text) {
          if (!entry.ended) entry.push(encoder.encode(text));
        },
        push(bytes) {
          if (entry.ended) return;
          if ((controller.desiredSize ?? 0) < -MAX_QUEUED) return finish(true);
          controller.enqueue(bytes);
          entry.lastWrite = now();
        },
        end(comment) {
          if (comment !== undefined) entry.write(`: ${comment}\n\n`);
          finish(true);
        },
      };
      if (shutdown.aborted) {
        finish(true);
        return entry;
      }
      open.add(entry);
      timer ??= setInterval(sweep, sweepMs);
      return entry;
    },
    get size() {
      return open.size;
    },
  };
}
