/**
 * `deno task verify`: compares every counter with the truth in the dialogs database — in the counters
 * tables and, for each instance in `COUNTERS_URLS`, as that instance serves it — prints the drift,
 * exits 0 when there is none and 1 when there is any (2 when a database or an instance cannot be read).
 */
import postgres from "postgres";
import { z } from "zod";
import { commonEnv, databaseUrl, parseEnv } from "../shared/config.ts";
import { redactUrl } from "../shared/db.ts";
import { signToken } from "../shared/auth.ts";
import { findDrift, type PairCount } from "../counters/drift.ts";

/** Reads both databases and returns the drift, the truth and the non-zero stored counters. */
export async function verifyCounters(dialogsUrl: string, countersUrl: string) {
  const dialogs = postgres(dialogsUrl, { max: 1, onnotice: () => {} });
  const counters = postgres(countersUrl, { max: 1, onnotice: () => {} });
  try {
    const truth = await dialogs<PairCount[]>`
      select recipient_id as "userId", sender_id as "peerId", count(*)::int as unread
      from messages where status = 'committed' and read_at is null
      group by recipient_id, sender_id`;
    const stored = await counters<PairCount[]>`
      select user_id as "userId", peer_id as "peerId", unread from unread_counters where unread <> 0`;
    return { drift: findDrift(truth, stored), pairs: truth.length, truth, stored };
  } finally {
    await Promise.all([dialogs.end(), counters.end()]);
  }
}

/** A count one counters instance serves that differs from the truth. */
export interface ServedDrift {
  instance: string;
  userId: string;
  peerId: string;
  expected: number;
  served: number;
}

/** Thrown when a counters instance does not answer `GET /api/counters` with 200. */
export class ServedReadError extends Error {
  constructor(readonly instance: string, message: string, options?: ErrorOptions) {
    super(`cannot read ${instance}/api/counters: ${message}`, options);
    this.name = "ServedReadError";
  }
}

/** Options of verifyServed(). */
export interface VerifyServedOptions {
  /** Base URLs of the counters instances, e.g. `http://127.0.0.1:8082`. */
  instances: string[];
  /** The `JWT_SECRET` the instances accept; a token is minted per user. */
  secret: string;
  /** Every (user, peer) with committed, unread messages; a pair not listed expects 0. */
  truth: PairCount[];
  /** The users whose served counters are compared. */
  users: Iterable<string>;
  /** Requests in flight at once (default 16). */
  concurrency?: number;
}

/**
 * Reads `GET /api/counters` of every user on every instance and returns each (instance, user, peer)
 * whose served count differs from the truth. Throws ServedReadError when an instance does not answer
 * 200 after five tries (about 4 s).
 */
export async function verifyServed(options: VerifyServedOptions): Promise<ServedDrift[]> {
  const expected = new Map<string, Map<string, number>>();
  for (const t of options.truth) {
    let peers = expected.get(t.userId);
    if (!peers) expected.set(t.userId, peers = new Map());
    peers.set(t.peerId, t.unread);
  }
  const jobs: { instance: string; userId: string }[] = [];
  for (const userId of new Set(options.users)) {
    for (const instance of options.instances) jobs.push({ instance, userId });
  }
  const drift: ServedDrift[] = [];
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < jobs.length; i = next++) {
      const { instance, userId } = jobs[i]!;
      const served = await readServed(instance, userId, options.secret);
      const truth = expected.get(userId) ?? new Map<string, number>();
      for (const peerId of new Set([...truth.keys(), ...Object.keys(served)])) {
        const want = truth.get(peerId) ?? 0, got = served[peerId] ?? 0;
        if (want !== got) drift.push({ instance, userId, peerId, expected: want, served: got });
      }
    }
  };
  await Promise.all(Array.from({ length: options.concurrency ?? 16 }, worker));
  return drift.sort((a, b) =>
    a.instance.localeCompare(b.instance) || a.userId.localeCompare(b.userId) ||
    a.peerId.localeCompare(b.peerId)
  );
}

async function readServed(
  instance: string,
  userId: string,
  secret: string,
): Promise<Record<string, number>> {
  const token = await signToken(userId, secret, 10 * 60);
  let last: unknown;
  for (let attempt = 0; attempt < 5; attempt++) {
    if (attempt > 0) await new Promise((r) => setTimeout(r, 250 * 2 ** (attempt - 1)));
    try {
      const res = await fetch(`${instance}/api/counters`, {
        headers: { Authorization: `Bearer ${token}` },
        signal: AbortSignal.timeout(10_000),
      });
      if (res.status !== 200) {
        last = new Error(`status ${res.status}: ${(await res.text()).slice(0, 200)}`);
        continue;
      }
      const body = await res.json() as { dialogs?: Record<string, number> };
      if (!body.dialogs || typeof body.dialogs !== "object") {
        throw new ServedReadError(instance, "the answer has no dialogs object");
      }
      return body.dialogs;
    } catch (err) {
      if (err instanceof ServedReadError) throw err;
      last = err;
    }
  }
  throw new ServedReadError(instance, (last as Error).message, { cause: last });
}

/** The users whose served counters verify compares: unread in the truth or a non-zero stored counter. */
export function usersToCheck(truth: PairCount[], stored: PairCount[]): Set<string> {
  return new Set([...truth, ...stored].map((p) => p.userId));
}

const countersUrls = z.string().optional().transform((value, ctx) => {
  const urls = (value ?? "").split(",").map((u) => u.trim()).filter(Boolean);
  for (const url of urls) {
    if (!/^https?:\/\/[^\s/]+(\/\S*)?$/.test(url)) {
      ctx.addIssue({ code: "custom", message: `must be http(s) base URLs separated by commas` });
      return z.NEVER;
    }
  }
  return urls.map((u) => u.replace(/\/+$/, ""));
});

if (import.meta.main) {
  let env;
  try {
    env = parseEnv({
      DIALOGS_DATABASE_URL: databaseUrl("postgres://postgres@127.0.0.1:5432/dialogs"),
      COUNTERS_DATABASE_URL: databaseUrl("postgres://postgres@127.0.0.1:5432/counters"),
      COUNTERS_URLS: countersUrls,
      JWT_SECRET: commonEnv.JWT_SECRET,
    }, Deno.env.toObject());
  } catch (err) {
    console.error(`verify: ${(err as Error).message}`);
    Deno.exit(2);
  }
  let result;
  try {
    result = await verifyCounters(env.DIALOGS_DATABASE_URL, env.COUNTERS_DATABASE_URL);
  } catch (err) {
    console.error(
      `verify: cannot read ${redactUrl(env.DIALOGS_DATABASE_URL)} and ${
        redactUrl(env.COUNTERS_DATABASE_URL)
      }: ${(err as Error).message}`,
    );
    Deno.exit(2);
  }
  // Plus a user nobody wrote to, so every instance is read at least once and must serve nothing.
  const users = usersToCheck(result.truth, result.stored).add(crypto.randomUUID());
  let served: ServedDrift[] = [];
  try {
    served = await verifyServed({
      instances: env.COUNTERS_URLS,
      secret: env.JWT_SECRET,
      truth: result.truth,
      users,
    });
  } catch (err) {
    console.error(`verify: ${(err as Error).message}`);
    Deno.exit(2);
  }
  const instances = env.COUNTERS_URLS.length;
  const checked = `${result.pairs} dialogs with unread messages checked` +
    (instances ? `; served counters of ${users.size} users on ${instances} instance(s)` : "");
  if (result.drift.length === 0 && served.length === 0) {
    console.log(`verify: no drift (${checked})`);
    Deno.exit(0);
  }
  if (result.drift.length) {
    console.log(
      "user_id                               peer_id                               expected  actual",
    );
    for (const d of result.drift) {
      console.log(
        `${d.userId}  ${d.peerId}  ${String(d.expected).padStart(8)}  ${
          String(d.actual).padStart(6)
        }`,
      );
    }
    console.log(`verify: drift in ${result.drift.length} counter(s)`);
  }
  if (served.length) {
    console.log(
      "instance  user_id                               peer_id                               expected  served",
    );
    for (const d of served) {
      console.log(
        `${d.instance}  ${d.userId}  ${d.peerId}  ${String(d.expected).padStart(8)}  ${
          String(d.served).padStart(6)
        }`,
      );
    }
    console.log(`verify: ${served.length} served count(s) differ from the truth`);
  }
  Deno.exit(1);
}
