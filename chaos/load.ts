/**
 * The chaos run's load: sends, marks read and counter reads from many users, spread over the
 * instances; a send or mark read is retried with the same Idempotency-Key on the next instance.
 */
import { seededRandom } from "../testing/random.ts";

/** What the load did. */
export interface LoadResult {
  /** messageId → sender and recipient of every send that got a 202. */
  accepted: Map<string, { from: string; to: string }>;
  reads: number;
  /** `GET /api/counters` answered 200. */
  counterReads: number;
  /** Requests that never got an answer after every retry (the message may still exist). */
  gaveUp: number;
  /** 4xx answers, which a well-formed load should never get. */
  rejected: number;
  attempts: number;
}

/** Options of the load. */
export interface LoadOptions {
  dialogsUrls: string[];
  /** Counters instances read with `GET /api/counters`; none, no counter reads. */
  countersUrls?: string[];
  users: string[];
  tokens: Map<string, string>;
  sends: number;
  /** Sends per second offered. */
  rate: number;
  /** Share of operations that are marks read. */
  readShare: number;
  /** Share of operations that are counter reads (when countersUrls are given). */
  countShare?: number;
  concurrency: number;
  seed: number;
  /** Stop issuing new operations at this time (ms since epoch). */
  deadline: number;
}

/** Runs the load until `sends` were issued or the deadline passed. */
export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const random = seededRandom(options.seed);
  const pick = <T>(items: T[]) => items[Math.floor(random() * items.length)]!;
  const result: LoadResult = {
    accepted: new Map(),
    reads: 0,
    counterReads: 0,
    gaveUp: 0,
    rejected: 0,
    attempts: 0,
  };
  const counters = options.countersUrls ?? [];
  const countShare = counters.length ? options.countShare ?? 0 : 0;
  const plan: { kind: "send" | "read" | "count"; from: string; to: string; key: string }[] = [];
  for (let sends = 0; sends < options.sends;) {
    const from = pick(options.users);
    const to = pick(options.users.filter((u) => u !== from));
    const r = random();
    const kind = r < options.readShare
      ? "read"
      : r < options.readShare + countShare
      ? "count"
      : "send";
    if (kind === "send") sends++;
    plan.push({ kind, from, to, key: crypto.randomUUID() });
  }
  const started = Date.now();
  const interval = (1000 * (1 - options.readShare - countShare)) / options.rate;
  let next = 0;

  async function request(
    op: (typeof plan)[number],
    i: number,
    attempt: number,
  ): Promise<Response | null> {
    result.attempts++;
    if (op.kind === "count") {
      try {
        return await fetch(`${counters[(i + attempt) % counters.length]}/api/counters`, {
          headers: { Authorization: `Bearer ${options.tokens.get(op.from)}` },
          signal: AbortSignal.timeout(10_000),
        });
      } catch {
        return null;
      }
    }
    const base = options.dialogsUrls[(i + attempt) % options.dialogsUrls.length];
    const path = op.kind === "send" ? `/api/dialog/${op.to}/send` : `/api/dialog/${op.to}/read`;
    try {
      return await fetch(`${base}${path}`, {
        method: "POST",
        headers: {
          Authorization: `Bearer ${options.tokens.get(op.from)}`,
          "Content-Type": "application/json",
          "Idempotency-Key": op.key,
        },
        body: op.kind === "send" ? JSON.stringify({ text: `chaos ${op.key}` }) : "{}",
        signal: AbortSignal.timeout(10_000),
      });
    } catch {
      return null;
    }
  }

  async function perform(op: (typeof plan)[number], i: number): Promise<void> {
    // The same Idempotency-Key on every attempt: a retry never creates a second message.
    for (let attempt = 0; attempt < 40; attempt++) {
      const res = await request(op, i, attempt);
      const body = res ? await res.json().catch(() => null) : null;
      if (res && res.status < 300) {
        if (op.kind === "send") result.accepted.set(body.messageId, { from: op.from, to: op.to });
        else if (op.kind === "read") result.reads++;
        else result.counterReads++;
        return;
      }
      if (res && res.status < 500) {
        result.rejected++;
        return;
      }
      await new Promise((r) => setTimeout(r, Math.min(100 * 2 ** attempt, 2_000)));
    }
    result.gaveUp++;
  }

  await Promise.all(Array.from({ length: options.concurrency }, async () => {
    for (;;) {
      const i = next++;
      if (i >= plan.length || Date.now() > options.deadline) return;
      const due = started + i * interval;
      const wait = due - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      await perform(plan[i]!, i);
    }
  }));
  return result;
}
