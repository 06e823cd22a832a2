/** The README's walkthrough, over HTTP, against a stack started with `docker compose up`. */
import { signToken } from "../../shared/auth.ts";
import { sleep } from "./commands.ts";

const ALICE = "11111111-1111-4111-8111-111111111111";
const BOB = "22222222-2222-4222-8222-222222222222";

/** Where the stack answers and how to reach inside its containers. */
export interface WalkthroughTarget {
  dialogsUrl: string;
  countersUrl: string;
  jwtSecret: string;
  /** Runs a command in a service's container (`compose exec -T`) and returns what it printed. */
  exec(service: string, args: string[], env?: Record<string, string>): Promise<string>;
  /** The services `exec` runs in for psql, `deno task verify` and NATS' monitoring page. */
  services: { postgres: string; counters: string; nats: string };
  /**
   * Runs in the middle of the walkthrough, after Bob's counters count the first message and before
   * he reads it (the scaled run kills an instance of each service and a NATS node there); returns
   * what it did, and may point `services` at others.
   */
  midway?: { name: string; run(): Promise<string> };
  /** Aborts on Ctrl-C: no further step starts and no wait goes on. */
  signal: AbortSignal;
}

/** An open `text/event-stream` response, read event by event. */
class EventStream {
  #buffer = "";
  #reader: ReadableStreamDefaultReader<string>;
  constructor(readonly url: string, private res: Response, private abort: AbortController) {
    this.#reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  }

  /** The data of the next `event` whose JSON data satisfies `done`; throws after `ms`. */
  async next(
    event: string,
    done: (data: Record<string, unknown>) => boolean,
    ms: number,
  ): Promise<Record<string, unknown>> {
    const timer = setTimeout(() => this.abort.abort(new Error("timed out")), ms);
    const seen: string[] = [];
    try {
      for (;;) {
        let end: number;
        while ((end = this.#buffer.indexOf("\n\n")) < 0) {
          const chunk = await this.#reader.read();
          if (chunk.done) throw new Error("the stream ended");
          this.#buffer += chunk.value;
        }
        const block = this.#buffer.slice(0, end);
        this.#buffer = this.#buffer.slice(end + 2);
        const field = (name: string) =>
          block.split("\n").filter((l) => l.startsWith(`${name}:`))
            .map((l) => l.slice(name.length + 1).trimStart()).join("\n");
        if (field("event") !== event) continue;
        const data = JSON.parse(field("data")) as Record<string, unknown>;
        seen.push(JSON.stringify(data));
        if (done(data)) return data;
      }
    } catch (err) {
      const got = seen.length ? `; got ${seen.join(", ")}` : "";
      throw new Error(`no matching "${event}" event within ${ms} ms on ${this.url}${got}`, {
        cause: err,
      });
    } finally {
      clearTimeout(timer);
    }
  }

  close(): void {
    this.abort.abort();
  }
}

/** Opens `url` as a live stream; throws unless it answers 200 text/event-stream. */
async function openStream(url: string): Promise<EventStream> {
  const abort = new AbortController();
  const res = await request(url, { signal: abort.signal });
  const type = res.headers.get("content-type") ?? "";
  if (res.status !== 200 || !type.startsWith("text/event-stream")) {
    abort.abort();
    throw new Error(`expected 200 text/event-stream from ${url}, got ${res.status} ${type}`);
  }
  return new EventStream(url.replace(/\?.*$/, ""), res, abort);
}

interface Answer {
  status: number;
  type: string;
  body: Record<string, unknown>;
}

/** fetch, with the URL in the error when nothing answers. */
async function request(url: string, init: RequestInit = {}): Promise<Response> {
  try {
    return await fetch(url, init);
  } catch (err) {
    throw new Error(`${init.method ?? "GET"} ${url}: ${(err as Error).message}`);
  }
}

async function call(url: string, token: string, init: RequestInit = {}): Promise<Answer> {
  const res = await request(url, {
    ...init,
    headers: { Authorization: `Bearer ${token}`, ...init.headers },
  });
  const text = await res.text();
  let body: Record<string, unknown> = {};
  try {
    body = JSON.parse(text);
  } catch { /* not JSON: the checks below say what was expected */ }
  return { status: res.status, type: res.headers.get("content-type") ?? "", body };
}

function expect(ok: boolean, what: string, got: unknown): void {
  if (!ok) throw new Error(`expected ${what}, got ${JSON.stringify(got)}`);
}

/** Polls `read` until `done` holds for its answer; throws with the last answer after `ms`. */
async function poll<T>(
  read: () => Promise<T>,
  done: (v: T) => boolean,
  { ms, what, signal }: { ms: number; what: string; signal: AbortSignal },
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    signal.throwIfAborted();
    const value = await read();
    if (done(value)) return value;
    if (Date.now() > deadline) {
      throw new Error(`expected ${what} within ${ms} ms, got ${JSON.stringify(value)}`);
    }
    await sleep(200, signal);
  }
}

/** Runs one named step, printing PASS or FAIL with what it found. */
export async function reportStep(
  name: string,
  body: () => Promise<string | void>,
): Promise<void> {
  const started = performance.now();
  try {
    const detail = await body();
    const ms = Math.round(performance.now() - started);
    console.log(`PASS ${name}${detail ? `: ${detail}` : ""} (${ms} ms)`);
  } catch (err) {
    console.log(`FAIL ${name}: ${(err as Error).message}`);
    throw Object.assign(err as Error, { reported: true });
  }
}

/** Token, send, committed, counters, mark read, errors, compensation and the drift check. */
export async function walkthrough(t: WalkthroughTarget, runId: string): Promise<void> {
  const until = <T>(read: () => Promise<T>, done: (v: T) => boolean, ms: number, what: string) =>
    poll(read, done, { ms, what, signal: t.signal });
  const step = (name: string, body: () => Promise<string | void>) => {
    t.signal.throwIfAborted();
    return reportStep(name, body);
  };
  const alice = await signToken(ALICE, t.jwtSecret);
  const bob = await signToken(BOB, t.jwtSecret);
  const message = (id: string, token: string) => call(`${t.dialogsUrl}/api/messages/${id}`, token);
  const counters = (token: string) => call(`${t.countersUrl}/api/counters`, token);
  const send = (text: string, key?: string) =>
    call(`${t.dialogsUrl}/api/dialog/${BOB}/send`, alice, {
      method: "POST",
      headers: { "Content-Type": "application/json", ...(key ? { "Idempotency-Key": key } : {}) },
      body: JSON.stringify({ text }),
    });

  await step("both services ready", async () => {
    for (const url of [t.dialogsUrl, t.countersUrl]) {
      const res = await request(`${url}/health/ready`);
      const body = await res.json();
      expect(res.status === 200 && body.status === "ok", `200 ok from ${url}/health/ready`, body);
    }
    return `${t.dialogsUrl} and ${t.countersUrl} answer /health/ready with 200`;
  });

  let live: EventStream | undefined;
  await step("Bob opens his live stream", async () => {
    live = await openStream(`${t.countersUrl}/api/counters/stream?access_token=${bob}`);
    const first = await live.next("counters", () => true, 10_000);
    expect(first.total === 0, "total 0 on open", first);
    return `event "counters" ${JSON.stringify(first)} on open`;
  });

  let msg = "";
  await step("Alice sends Bob a message with an Idempotency-Key", async () => {
    const key = `compose-verify-${runId}`;
    const first = await send("Hello Bob", key);
    expect(first.status === 202 && first.body.status === "pending", "202 pending", first);
    const again = await send("Hello Bob", key);
    expect(again.body.messageId === first.body.messageId, "the same message on a retry", again);
    msg = String(first.body.messageId);
    return `202 pending, the retry returns the same message ${msg}`;
  });

  await step("the message becomes committed", async () => {
    await until(
      () => message(msg, alice),
      (a) => a.body.status === "committed",
      30_000,
      "committed",
    );
    return "status committed";
  });

  await step("Bob's counters count it", async () => {
    const total = await counters(bob);
    expect(total.body.total === 1, "total 1", total.body);
    expect(
      (total.body.dialogs as Record<string, number>)?.[ALICE] === 1,
      "1 from Alice",
      total.body,
    );
    const peer = await call(`${t.countersUrl}/api/counters/${ALICE}`, bob);
    expect(peer.body.unread === 1, "unread 1 for Alice", peer.body);
    const list = await call(`${t.dialogsUrl}/api/dialog/${ALICE}/list`, bob);
    const messages = (list.body.messages ?? []) as { id: string }[];
    expect(messages[0]?.id === msg, "the message in Bob's dialog", list.body);
    return `${JSON.stringify(total.body)} and ${JSON.stringify(peer.body)}`;
  });

  await step("the live stream passes the change on as it comes", async () => {
    try {
      const event = await live!.next("counters", (d) => d.total === 1, 10_000);
      return `event "counters" ${JSON.stringify(event)}`;
    } finally {
      live!.close();
    }
  });

  if (t.midway) await step(t.midway.name, t.midway.run);

  await step("Bob marks the dialog read", async () => {
    const read = await call(`${t.dialogsUrl}/api/dialog/${ALICE}/read`, bob, { method: "POST" });
    expect(read.status === 200 && read.body.read === 1, '{"read":1}', read);
    // Reading takes the badge down asynchronously (dialogs' outbox, then counters' consumer); in the
    // scaled stack this is the first change after a NATS node's kill, which took 8-13 s there.
    await until(() => counters(bob), (a) => a.body.total === 0, 30_000, "total 0");
    const seen = await message(msg, bob);
    expect(typeof seen.body.readAt === "string", "readAt set", seen.body);
    const again = await call(`${t.dialogsUrl}/api/dialog/${ALICE}/read`, bob, { method: "POST" });
    expect(again.body.read === 0, '{"read":0} the second time', again.body);
    return `counters back to 0, readAt ${seen.body.readAt}, a second read reads 0`;
  });

  await step("an empty text is a 400 problem", async () => {
    const bad = await send("");
    expect(bad.status === 400 && bad.type.startsWith("application/problem+json"), "400", bad);
    return "400 application/problem+json";
  });

  await step("compensation: a refused count fails the send", async () => {
    const psql = (sql: string) =>
      t.exec(t.services.postgres, ["psql", "-U", "postgres", "counters", "-c", sql]);
    await psql("alter table unread_counters add constraint unread_max check (unread <= 1)");
    try {
      const m2 = String((await send("Second")).body.messageId);
      const m3 = String((await send("Third")).body.messageId);
      await until(
        () => message(m2, alice),
        (a) => a.body.status === "committed",
        30_000,
        "M2 committed",
      );
      await until(() => message(m3, alice), (a) => a.body.status === "failed", 30_000, "M3 failed");
      const hidden = await message(m3, bob);
      expect(hidden.status === 404, "404 for Bob on the failed message", hidden.status);
      const total = await counters(bob);
      expect(total.body.total === 1, "Bob's total 1", total.body);
      return `second committed, third failed, Bob gets 404 on it, counters ${
        JSON.stringify(total.body)
      }`;
    } finally {
      await psql("alter table unread_counters drop constraint unread_max");
    }
  });

  await step("NATS runs JetStream", async () => {
    const jsz = JSON.parse(
      await t.exec(t.services.nats, ["wget", "-q", "-O", "-", "http://127.0.0.1:8222/jsz"]),
    ) as { disabled?: boolean; config?: unknown; streams?: number };
    expect(!jsz.disabled && jsz.config !== undefined, "JetStream enabled in /jsz", jsz);
    return `/jsz: ${jsz.streams} streams`;
  });

  await step("deno task verify finds no drift", async () => {
    const out = await t.exec(
      t.services.counters,
      [
        "deno",
        "run",
        "--frozen",
        "--allow-net",
        "--allow-env",
        "--allow-read",
        "--allow-sys",
        "scripts/verify.ts",
      ],
      {
        DIALOGS_DATABASE_URL: "postgres://postgres@postgres:5432/dialogs",
        COUNTERS_DATABASE_URL: "postgres://postgres@postgres:5432/counters",
      },
    );
    expect(/no drift/.test(out), '"no drift"', out.trim());
    return out.trim();
  });
}
