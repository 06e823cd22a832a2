/**
 * What a chaos run does once its load is over: wait for quiet, fire fuzz requests, and compare every
 * counter, in Postgres and as each counters instance serves it, with the truth.
 */
import { jetstreamManager } from "@nats-io/jetstream";
import { Redis } from "ioredis";
import postgres from "postgres";
import { TIMEOUT_REASON } from "../dialogs/saga.ts";
import { connectNats } from "../shared/jetstream.ts";
import { usersToCheck, verifyCounters, verifyServed } from "../scripts/verify.ts";
import { fuzzContext, type FuzzGroup, fuzzRequests } from "../testing/fuzz.ts";
import { type ChaosWorld, instances, instanceUrls, type Servers, sleep } from "./world.ts";

/**
 * Waits until no send is pending, both outboxes are empty and every consumer has acked everything;
 * false when that takes longer than `timeoutMs`.
 */
export async function waitForQuiet(
  world: ChaosWorld,
  servers: Servers,
  timeoutMs: number,
): Promise<boolean> {
  const d = postgres(world.databaseUrls.dialogs, { max: 1, onnotice: () => {} });
  const c = postgres(world.databaseUrls.counters, { max: 1, onnotice: () => {} });
  const nc = await connectNats(servers.natsUrl, "chaos-quiet");
  try {
    const jsm = await jetstreamManager(nc);
    const deadline = Date.now() + timeoutMs;
    let quietChecks = 0;
    while (Date.now() < deadline) {
      try {
        const [pending] = await d`select count(*)::int as n from messages where status = 'pending'`;
        const [dOut] = await d`select count(*)::int as n from outbox where sent_at is null`;
        const [cOut] = await c`select count(*)::int as n from outbox where sent_at is null`;
        let busy = pending!.n + dOut!.n + cOut!.n;
        // Whatever the durables are named: every consumer of the stream must be done.
        let consumers = 0;
        for await (const info of jsm.consumers.list(world.stream)) {
          consumers++;
          busy += info.num_pending + info.num_ack_pending;
        }
        if (consumers < 2) busy++;
        quietChecks = busy === 0 ? quietChecks + 1 : 0;
        if (quietChecks >= 3) return true;
      } catch {
        quietChecks = 0;
      }
      await sleep(500);
    }
    return false;
  } finally {
    await nc.close();
    await d.end();
    await c.end();
  }
}

/** What fuzzing found. */
export interface FuzzResult {
  requests: number;
  /** Answers 5xx (but the 503s below), requests with no answer and instances that crashed. */
  serverErrors: number;
  /** 503 problems saying a dependency is unavailable for a moment: retry, nothing changed. */
  retryLater: number;
}

/**
 * Fires `count` fuzz requests at the instances, 16 at a time, and counts the 5xx answers, the
 * requests with no answer and the instances that crashed; logs the first few.
 */
export async function fuzzInstances(
  world: ChaosWorld,
  input: {
    seed: number;
    count: number;
    users: string[];
    messageIds: string[];
    groups?: FuzzGroup[];
  },
  log: (line: string) => void,
): Promise<FuzzResult> {
  const ctx = await fuzzContext(world.secret, input.users, input.messageIds, input.groups);
  const requests = fuzzRequests(input.seed, input.count, ctx);
  const bases = instanceUrls(world);
  let serverErrors = 0, retryLater = 0, next = 0;
  const examples: string[] = [];
  const note = (what: string) => {
    serverErrors++;
    if (examples.length < 5) examples.push(what);
  };
  await Promise.all(Array.from({ length: 16 }, async () => {
    for (let i = next++; i < requests.length; i = next++) {
      const req = requests[i]!;
      const urls = bases[req.service];
      try {
        const res = await fetch(`${urls[i % urls.length]}${req.path}`, {
          method: req.method,
          headers: req.headers,
          body: req.body as BodyInit | undefined,
          signal: AbortSignal.timeout(10_000),
        });
        // An opened live stream has answered with its headers; its body never ends.
        const stream = res.headers.get("content-type")?.startsWith("text/event-stream");
        const body = stream ? "" : await res.text();
        if (stream) await res.body?.cancel();
        // A 503 problem saying the database (or a dependency) is unavailable for a moment is the
        // contract's answer when a request meets a connection a fault broke: it changed nothing
        // and says to retry. Counted apart; any other 5xx is a failure.
        if (res.status === 503 && /problems\/(unavailable|not-ready)"/.test(body)) {
          retryLater++;
          if (examples.length < 5) examples.push(`${req.method} ${req.path} answered 503: ${body}`);
        } else if (res.status >= 500) {
          note(`${req.method} ${req.path} answered ${res.status}: ${body}`);
        }
      } catch (err) {
        note(`${req.method} ${req.path} got no answer: ${err}`); // no answer at all
      }
    }
  }));
  for (const example of examples) log(`chaos: fuzz: ${example.slice(0, 300)}`);
  const crashed = instances(world).filter((p) => !p.running).map((p) => p.name);
  if (crashed.length) log(`chaos: crashed during fuzzing: ${crashed.join(", ")}`);
  return { requests: requests.length, serverErrors: serverErrors + crashed.length, retryLater };
}

/** The invariant's figures: how the accepted sends ended and which counters are wrong. */
export interface CheckResult {
  committed: number;
  failed: number;
  timedOut: number;
  /** When each send failed by the saga timeout was created (ms since epoch). */
  timedOutSentAt: number[];
  lost: number;
  drift: number;
  driftTables: number;
  driftServed: number;
  countedTwice: number;
}

/**
 * Starts any instance that crashed (the served check needs every one up), then compares every
 * counter, in Postgres and as served by every instance, with the truth.
 */
export async function checkInvariant(
  world: ChaosWorld,
  input: { users: string[]; accepted: Map<string, { from: string; to: string }> },
  log: (line: string) => void,
): Promise<CheckResult> {
  for (const p of instances(world)) await p.start();
  const d = postgres(world.databaseUrls.dialogs, { max: 1, onnotice: () => {} });
  try {
    const rows = await d<
      { id: string; status: string; reason: string | null; createdAt: Date }[]
    >`select id, status, failure_reason as reason, created_at as "createdAt" from messages`;
    const status = new Map(rows.map((r) => [r.id, r]));
    let committed = 0, failed = 0, lost = 0;
    const timedOutSentAt: number[] = [];
    for (const id of input.accepted.keys()) {
      const s = status.get(id);
      if (s?.status === "committed" || s?.status === "deleted") committed++;
      else if (s?.status === "failed") {
        failed++;
        if (s.reason === TIMEOUT_REASON) timedOutSentAt.push(s.createdAt.getTime());
      } else lost++;
    }
    const { drift: stored, truth, stored: tables } = await verifyCounters(
      world.databaseUrls.dialogs,
      world.databaseUrls.counters,
    );
    const served = await verifyServed({
      instances: instanceUrls(world).counters,
      secret: world.secret,
      truth,
      users: [...input.users, ...usersToCheck(truth, tables)],
      concurrency: 8,
    });
    for (const x of served.slice(0, 5)) {
      log(
        `chaos: ${x.instance} serves ${x.what} ${x.served} to ${x.userId} for ${x.peerId}, ` +
          `truth ${x.expected}`,
      );
    }
    if (served.length > 0) {
      await explainServed(world, [...new Set(served.slice(0, 5).map((x) => x.userId))], log)
        .catch((err) => log(`chaos: could not explain the drift as served: ${err}`));
    }
    const pair = (x: { userId: string; peerId: string }) => `${x.userId}/${x.peerId}`;
    const bad = new Set([...stored.map(pair), ...served.map(pair)]);
    const twice = new Set([
      ...stored.filter((x) => x.actual > x.expected).map(pair),
      ...served.filter((x) => x.served > x.expected).map(pair),
    ]);
    return {
      committed,
      failed,
      timedOut: timedOutSentAt.length,
      timedOutSentAt,
      lost,
      drift: bad.size,
      driftTables: stored.length,
      driftServed: served.length,
      countedTwice: twice.size,
    };
  } finally {
    await d.end();
  }
}

/**
 * Logs, for users served wrong, what the caches had to go on: the user's version in Postgres, the
 * cache generation Postgres names, and the version Redis holds for the user in it.
 */
async function explainServed(
  world: ChaosWorld,
  users: string[],
  log: (line: string) => void,
): Promise<void> {
  const servers = await world.servers!;
  const c = postgres(world.databaseUrls.counters, { max: 1, onnotice: () => {} });
  const redis = new Redis(servers.redis.url, { keyPrefix: `${world.prefix}:`, lazyConnect: true });
  redis.on("error", () => {});
  try {
    const [generation] = await c<{ stamp: string; redis_run_id: string | null }[]>`
      select stamp, redis_run_id from cache_generation`;
    const held = await redis.get("generation");
    log(
      `chaos: cache generation ${generation?.stamp} (run ${generation?.redis_run_id}), ` +
        `Redis holds ${held}`,
    );
    for (const userId of users) {
      const [row] = await c<{ version: string }[]>`
        select version from counter_versions where user_id = ${userId}`;
      const entry = held === null ? null : await redis.get(`g:${held}:user:${userId}`);
      log(
        `chaos: ${userId} is at version ${row?.version ?? 0} in Postgres, ` +
          `${
            entry === null ? "absent" : `at version ${entry.slice(0, entry.indexOf("|"))}`
          } in Redis`,
      );
    }
  } finally {
    redis.disconnect();
    await c.end();
  }
}
