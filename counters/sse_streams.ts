/**
 * The open server-sent event streams of one counters instance, kept cheap enough for ten thousand:
 *
 * - Each stream is one `ReadableStream` the response body reads, with its text pushed in (no
 *   TransformStream, writer and second stream per connection).
 * - The server cancels that stream as soon as the client's connection closes (Deno.serve does, read
 *   pending or not), which ends it at once: no heartbeat write is needed to notice.
 * - One timer serves every stream's heartbeat and token expiry, and one listener on the shutdown
 *   signal ends them all; no stream holds a timer, a promise race or a listener of its own.
 * - A client that stops reading while its queue grows past MAX_QUEUED chunks is ended; it
 *   reconnects and gets the current state, so nothing it needed is lost.
 */

/** Chunks a stream may hold unread before its client counts as gone. */
const MAX_QUEUED = 64;

/** The longest the sweep waits between two looks at the streams. */
const MAX_SWEEP_MS = 250;

const encoder = new TextEncoder();

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
}

interface Entry extends SseStream {
  ended: boolean;
  lastWrite: number;
  expiresAt: number;
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

  function sweep() {
    const at = now();
    for (const entry of open) {
      if (at >= entry.expiresAt) entry.end("token expired");
      else if (at - entry.lastWrite >= quietMs) entry.write(": heartbeat\n\n");
    }
  }

  shutdown.addEventListener("abort", () => {
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
      };
      const entry: Entry = {
        body,
        ended: false,
        lastWrite: now(),
        expiresAt: expiresAt ?? Infinity,
        write(text) {
          if (entry.ended) return;
          if ((controller.desiredSize ?? 0) < -MAX_QUEUED) return finish(true);
          controller.enqueue(encoder.encode(text));
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
