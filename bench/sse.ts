/** A small Server-Sent Events client for the bench: opens a stream with fetch and parses its events. */

/** One event of a stream: its name (`message` when unnamed), id and data lines joined by "\n". */
export interface SseEvent {
  event: string;
  id: string | undefined;
  data: string;
}

/**
 * Parses an event stream's text as it arrives in chunks of any size. `push` takes the next chunk
 * and returns the events it completed; comments (heartbeats) and events without data are skipped.
 */
export function sseParser(): { push(chunk: string): SseEvent[] } {
  let buffer = "";
  let event = "", id: string | undefined, data: string[] = [];
  const line = (text: string, out: SseEvent[]) => {
    if (text === "") {
      if (data.length) out.push({ event: event || "message", id, data: data.join("\n") });
      event = "";
      data = [];
      return;
    }
    if (text.startsWith(":")) return;
    const colon = text.indexOf(":");
    const field = colon < 0 ? text : text.slice(0, colon);
    let value = colon < 0 ? "" : text.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
    else if (field === "id") id = value;
  };
  return {
    push(chunk) {
      buffer += chunk;
      const out: SseEvent[] = [];
      for (;;) {
        const end = buffer.search(/\r\n|\r|\n/);
        // A lone "\r" at the end may be the first half of "\r\n": wait for the next chunk.
        if (end < 0 || (buffer[end] === "\r" && end === buffer.length - 1)) break;
        const width = buffer.startsWith("\r\n", end) ? 2 : 1;
        line(buffer.slice(0, end), out);
        buffer = buffer.slice(end + width);
      }
      return out;
    },
  };
}

/**
 * Opens `url` as an event stream with `headers` and calls `onEvent` with each event and the time
 * (Date.now()) its last chunk arrived. Resolves when the stream ends or `signal` aborts it; rejects
 * when the answer is not a 200 event stream.
 */
export async function readSse(
  url: string,
  headers: Record<string, string>,
  signal: AbortSignal,
  onEvent: (event: SseEvent, at: number) => void,
): Promise<void> {
  const res = await fetch(url, { headers: { Accept: "text/event-stream", ...headers }, signal });
  if (res.status !== 200 || !res.body) {
    await res.body?.cancel();
    throw new Error(`${url} answered ${res.status}`);
  }
  const parser = sseParser();
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  // An abort does not always end a pending read of a body already streaming: cancel it too.
  const cancel = () => reader.cancel().catch(() => {});
  signal.addEventListener("abort", cancel, { once: true });
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      const at = Date.now();
      for (const event of parser.push(value)) onEvent(event, at);
    }
  } catch (err) {
    if (!signal.aborted) throw err;
  } finally {
    signal.removeEventListener("abort", cancel);
    reader.releaseLock();
  }
}
