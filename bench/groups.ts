/**
 * Issue 14's group measurements, on the run's world: (g1) sends to a 10,000-member group vs a
 * 2-member group at the same offered load, with the rows each writes in counters; (g3) 1,000
 * members of the large group holding a live stream on the one counters instance while the group
 * gets messages; (g2) GET /api/counters for users in 50 groups vs users with 50 dialogs.
 */
import postgres from "postgres";
import { signToken } from "../shared/auth.ts";
import type { Sql } from "../shared/db.ts";
import { log, peakRss } from "./measure.ts";
import type { GroupFigures, GroupSends, Run, StreamFigures } from "./report.ts";
import { readSse } from "./sse.ts";
import type { BenchWorld } from "./world.ts";
import { runWrk, runWrkSends } from "./wrk.ts";

/** What the group measurements vary. */
export interface GroupOptions {
  /** Seconds of load per measurement. */
  seconds: number;
  /** wrk's connections for (g2)'s reads. */
  connections: number;
  /**
   * (g1)'s offered load, sends per second, the same for both groups; without it, half what the
   * 2-member group's saga does at full speed.
   */
  rate?: number;
  /** Members of the large group. */
  members: number;
  /** (g3): streams held open and sends per second while they are. */
  streams: number;
  streamRate: number;
}

/** The defaults: a 10,000-member group, 1,000 streams at 5 sends/s. */
export const GROUP_DEFAULTS = { members: 10_000, streams: 1_000, streamRate: 5 };

/** (g2)'s layout: READERS users each in CONVERSATIONS of GROUPS groups, or with as many dialogs. */
const READERS = 1_000, GROUPS = 100, CONVERSATIONS = 50;
/** Users a group is created with; the rest are added in chunks of ADD_CHUNK (bodies ≤ 64 KiB). */
const CREATE_CHUNK = 999, ADD_CHUNK = 1_000;

const ids = (n: number) => Array.from({ length: n }, () => crypto.randomUUID());
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The run's services and databases, and a token for every user the measurements act as. */
interface Ctx {
  world: BenchWorld;
  dialogsUrl: string;
  countersUrl: string;
  dSql: Sql;
  cSql: Sql;
  tokens: Map<string, string>;
}

async function signAll(ctx: Ctx, users: string[]): Promise<void> {
  const missing = users.filter((u) => !ctx.tokens.has(u));
  const signed = await Promise.all(missing.map((u) => signToken(u, ctx.world.secret, 3_600)));
  missing.forEach((u, i) => ctx.tokens.set(u, signed[i]!));
}

/** Calls the API as `user`; the JSON answer, or an error naming the call and its answer. */
async function call<T>(
  ctx: Ctx,
  base: string,
  user: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<T> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: {
      Authorization: `Bearer ${ctx.tokens.get(user)}`,
      ...(body === undefined ? {} : { "Content-Type": "application/json" }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path} answered ${res.status}: ${text.slice(0, 300)}`);
  return (text ? JSON.parse(text) : undefined) as T;
}

/** Runs `work` over `items` with at most `limit` at a time. */
async function eachLimited<T>(items: T[], limit: number, work: (item: T) => Promise<void>) {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await work(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** Creates a group of `members` (the first is the owner) through the API; returns its id. */
export async function createGroup(ctx: Ctx, title: string, members: string[]): Promise<string> {
  const [owner, ...others] = members;
  const { id } = await call<{ id: string }>(ctx, ctx.dialogsUrl, owner!, "POST", "/api/groups", {
    title,
    members: others.slice(0, CREATE_CHUNK),
  });
  for (let i = CREATE_CHUNK; i < others.length; i += ADD_CHUNK) {
    await call(ctx, ctx.dialogsUrl, owner!, "POST", `/api/groups/${id}/members`, {
      userIds: others.slice(i, i + ADD_CHUNK),
    });
  }
  return id;
}

/** Waits until counters knows `expected` current members of `groupIds` (their events applied). */
async function waitForMembers(ctx: Ctx, groupIds: string[], expected: number): Promise<void> {
  const deadline = Date.now() + 180_000;
  for (;;) {
    const [row] = await ctx.cSql<{ n: number }[]>`
      select count(*)::int as n from group_members where group_id = any(${groupIds}::uuid[]) and member`;
    if (row!.n >= expected) return;
    if (Date.now() > deadline) {
      throw new Error(`counters knows ${row!.n} of ${expected} group members after 180 s`);
    }
    await sleep(250);
  }
}

/** Waits until no message is pending in dialogs. */
async function waitQuiet(ctx: Ctx, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const [row] = await ctx.dSql<{ n: number }[]>`
      select count(*)::int as n from messages where status = 'pending'`;
    if (row!.n === 0) return;
    if (Date.now() > deadline) throw new Error(`${row!.n} sends still pending`);
    await sleep(200);
  }
}

/**
 * Rows inserted, updated and deleted in the counters database so far. The services' backends report
 * their counts to the statistics within about a second of going idle, so this reads until two
 * readings half a second apart agree.
 */
async function rowsWritten(ctx: Ctx): Promise<number> {
  const read = async () => {
    const [row] = await ctx.cSql<{ n: number }[]>`
      select coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::float8 as n
      from pg_stat_user_tables`;
    return row!.n;
  };
  await sleep(1_500);
  let last = await read();
  for (let i = 0; i < 20; i++) {
    await sleep(500);
    const now = await read();
    if (now === last) return now;
    last = now;
  }
  return last;
}

/** Send → terminal figures of one group's messages created since `since`. */
async function groupSagaFigures(ctx: Ctx, groupId: string, since: Date) {
  const [f] = await ctx.dSql<{ count: number; failed: number; p50: number; p99: number }[]>`
    select count(*)::int as count,
           count(*) filter (where status <> 'committed')::int as failed,
           coalesce(percentile_cont(0.5) within group
             (order by extract(epoch from finished_at - created_at)), 0) * 1000 as p50,
           coalesce(percentile_cont(0.99) within group
             (order by extract(epoch from finished_at - created_at)), 0) * 1000 as p99
    from messages where group_id = ${groupId} and created_at >= ${since}`;
  return { count: f!.count, failed: f!.failed, p50Ms: Number(f!.p50), p99Ms: Number(f!.p99) };
}

/** Group sends through the saga per second, wrk's 16 connections sending as fast as they go. */
async function groupCeiling(ctx: Ctx, groupId: string, senders: string[], seconds: number) {
  const since = new Date();
  await runWrkSends(ctx.dialogsUrl, {
    connections: 16,
    seconds,
    senders: senders.map((u) => ({
      token: ctx.tokens.get(u)!,
      path: `/api/groups/${groupId}/send`,
    })),
  });
  await waitQuiet(ctx);
  const [f] = await ctx.dSql<{ count: number; seconds: number }[]>`
    select count(*)::int as count,
           extract(epoch from max(finished_at) - min(created_at))::float8 as seconds
    from messages where group_id = ${groupId} and created_at >= ${since}`;
  return f!.count / Math.max(f!.seconds, 0.001);
}

/** (g1) one group: a short warm-up, then `seconds` of sends at `rate`, with the rows they wrote. */
async function measureGroupSends(
  ctx: Ctx,
  groupId: string,
  members: number,
  senders: string[],
  rate: number,
  seconds: number,
): Promise<GroupSends> {
  await paceSends(ctx, groupId, senders, rate, 2);
  await waitQuiet(ctx);
  const before = await rowsWritten(ctx);
  const since = new Date();
  const refused = await paceSends(ctx, groupId, senders, rate, seconds);
  await waitQuiet(ctx);
  const saga = await groupSagaFigures(ctx, groupId, since);
  const after = await rowsWritten(ctx);
  const figures = {
    members,
    ...saga,
    // A refused send never reached the saga: it fails the run as much as a failed saga.
    failed: saga.failed + refused,
    rowsPerMessage: saga.count ? (after - before) / saga.count : 0,
  };
  log(
    `(g1) ${members} members: ${saga.count} sends, p50 ${saga.p50Ms.toFixed(0)} ms, p99 ${
      saga.p99Ms.toFixed(0)
    } ms, ${figures.failed} failed, ${figures.rowsPerMessage.toFixed(1)} rows each`,
  );
  return figures;
}

/**
 * (g1)'s latency: sends to every group at `rate` each, at once, so they share one window of the
 * machine (a checkpoint or another process then slows both alike); each group's figures, with the
 * rows per message from its own run.
 */
async function sendsTogether(
  ctx: Ctx,
  groups: { id: string; senders: string[]; rows: GroupSends }[],
  rate: number,
  seconds: number,
): Promise<GroupSends[]> {
  await Promise.all(groups.map((g) => paceSends(ctx, g.id, g.senders, rate, 2)));
  await waitQuiet(ctx);
  const since = new Date();
  const refused = await Promise.all(
    groups.map((g) => paceSends(ctx, g.id, g.senders, rate, seconds)),
  );
  await waitQuiet(ctx);
  const figures = await Promise.all(groups.map((g) => groupSagaFigures(ctx, g.id, since)));
  return groups.map((g, i) => {
    const saga = figures[i]!;
    log(
      `(g1) ${g.rows.members} members, same window: ${saga.count} sends, p50 ${
        saga.p50Ms.toFixed(0)
      } ms, p99 ${saga.p99Ms.toFixed(0)} ms`,
    );
    return { ...g.rows, ...saga, failed: saga.failed + refused[i]! };
  });
}

/** Each reader's groups: reader i is in the CONVERSATIONS groups g with (i − g) mod GROUPS < 50. */
export function readerGroups(readers: number, groups: number, perReader: number): number[][] {
  return Array.from(
    { length: groups },
    (_, g) =>
      Array.from({ length: readers }, (_, i) => i).filter((i) =>
        (((i - g) % groups) + groups) % groups < perReader
      ),
  );
}

/** (g2) seeds users in 50 groups (through the API) and users with 50 dialogs, then reads both. */
async function measureGroupReads(ctx: Ctx, options: GroupOptions) {
  const groupUsers = ids(READERS), dialogUsers = ids(READERS), peers = ids(CONVERSATIONS);
  await signAll(ctx, [...groupUsers, ...dialogUsers]);
  log(`(g2) ${GROUPS} groups of ${(READERS * CONVERSATIONS) / GROUPS} members, 3 messages each`);
  const layout = readerGroups(READERS, GROUPS, CONVERSATIONS).map((m) =>
    m.map((i) => groupUsers[i]!)
  );
  const groupIds: string[] = new Array(GROUPS);
  await eachLimited(layout.map((m, g) => [m, g] as const), 8, async ([members, g]) => {
    groupIds[g] = await createGroup(ctx, `bench reads ${g}`, members);
  });
  await waitForMembers(ctx, groupIds, READERS * CONVERSATIONS);
  const sends = layout.flatMap((members, g) => {
    const path = `/api/groups/${groupIds[g]}/send`;
    return [
      { from: members[0]!, path, body: { text: "bench", mentions: ["all"] } },
      { from: members[1]!, path, body: { text: "bench", mentions: [members[2]!] } },
      { from: members[2]!, path, body: { text: "bench" } },
    ];
  });
  await eachLimited(sends, 16, async (s) => {
    await call(ctx, ctx.dialogsUrl, s.from, "POST", s.path, s.body);
  });
  await waitQuiet(ctx);
  const [seeded] = await ctx.dSql<{ committed: number; all: number }[]>`
    select count(*) filter (where status = 'committed')::int as committed, count(*)::int as all
    from messages where group_id = any(${groupIds}::uuid[])`;
  if (seeded!.committed !== sends.length) {
    throw new Error(`(g2) ${seeded!.committed} of ${seeded!.all} seeded group messages committed`);
  }
  await ctx.cSql`
    insert into unread_counters (user_id, peer_id, unread)
    select u, p, 1 + (abs(hashtext(u::text || p::text)) % 9)
    from unnest(${dialogUsers}::uuid[]) u, unnest(${peers}::uuid[]) p`;
  await ctx.cSql`
    insert into counter_versions (user_id, version)
    select u, 1 from unnest(${dialogUsers}::uuid[]) u`;
  await expectConversations(ctx, groupUsers[0]!, "groups");
  await expectConversations(ctx, dialogUsers[0]!, "dialogs");
  const wrk = (users: string[], seconds = options.seconds) =>
    runWrk(`${ctx.countersUrl}/api/counters`, {
      connections: options.connections,
      seconds,
      tokens: users.map((u) => ctx.tokens.get(u)!),
    });
  log(`(g2) GET /api/counters, users in ${CONVERSATIONS} groups vs with ${CONVERSATIONS} dialogs`);
  // Each is warmed right before it is measured, so both start with the same caches.
  const measured = async (users: string[], what: string) => {
    await wrk(users, Math.min(5, options.seconds));
    const before = await cacheLookups(ctx);
    const run = await wrk(users);
    log(`(g2) ${what}: cache lookups ${describeLookups(before, await cacheLookups(ctx))}`);
    return run;
  };
  const readGroups: Run = await measured(groupUsers, "50 groups");
  const readDialogs: Run = await measured(dialogUsers, "50 dialogs");
  return { readGroups, readDialogs };
}

/** counters' cache lookups so far, by result (`counters_cache_lookups_total`). */
async function cacheLookups(ctx: Ctx): Promise<Record<string, number>> {
  const text = await (await fetch(`${ctx.countersUrl}/metrics`)).text();
  const counts: Record<string, number> = {};
  for (const m of text.matchAll(/^counters_cache_lookups_total\{result="(\w+)"\} (\d+)/gm)) {
    counts[m[1]!] = Number(m[2]);
  }
  return counts;
}

/** The lookups between two readings, as "local 12345, hit 3, …". */
export function describeLookups(
  before: Record<string, number>,
  after: Record<string, number>,
): string {
  return Object.entries(after)
    .map(([result, n]) => [result, n - (before[result] ?? 0)] as const)
    .filter(([, n]) => n > 0)
    .map(([result, n]) => `${result} ${n}`)
    .join(", ") || "none";
}

/** Checks that `user`'s counters show CONVERSATIONS `kind` with unread, so wrk reads real bodies. */
async function expectConversations(ctx: Ctx, user: string, kind: "groups" | "dialogs") {
  const body = await call<Record<string, unknown>>(
    ctx,
    ctx.countersUrl,
    user,
    "GET",
    "/api/counters",
  );
  const entries = Object.values((body[kind] ?? {}) as Record<string, unknown>);
  if (entries.length !== CONVERSATIONS) {
    throw new Error(
      `a (g2) reader has ${entries.length} ${kind}, not ${CONVERSATIONS}: ${
        JSON.stringify(body).slice(0, 300)
      }`,
    );
  }
}

/** The p-th percentile (0–100, nearest rank) of `values`; 0 for none. */
export function percentile(values: number[], p: number): number {
  if (!values.length) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[
    Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  ]!;
}

/** A `counters` event as one stream saw it: when it arrived and the group's unread in it. */
export interface StreamEvent {
  at: number;
  unread: number;
}

/**
 * commit → event latencies. `commits` are the committed times (ms) of the messages sent while the
 * streams were open, in `seq` order; each stream's first event is its state when it opened. The
 * stream shows the j-th message once its unread reaches the first event's + j (its holder sent
 * none of them), so a sample is the arrival of the first such event minus the j-th commit time.
 */
export function streamLatencies(
  commits: number[],
  streams: StreamEvent[][],
): { samples: number[]; missing: number } {
  const samples: number[] = [];
  let missing = 0;
  for (const events of streams) {
    const base = events[0]?.unread ?? 0;
    let k = 0;
    for (const [j, committedAt] of commits.entries()) {
      while (k < events.length && events[k]!.unread < base + j + 1) k++;
      if (k === events.length) {
        missing += commits.length - j;
        break;
      }
      samples.push(events[k]!.at - committedAt);
    }
  }
  return { samples, missing };
}

/** One open stream of (g3): its events, and how it ended if it did. */
interface OpenStream {
  events: StreamEvent[];
  ended: Promise<void>;
  error?: Error;
}

function openStream(ctx: Ctx, user: string, groupId: string, signal: AbortSignal): OpenStream {
  const stream: OpenStream = { events: [], ended: Promise.resolve() };
  stream.ended = readSse(
    `${ctx.countersUrl}/api/counters/stream`,
    { Authorization: `Bearer ${ctx.tokens.get(user)}` },
    signal,
    (event, at) => {
      if (event.event !== "counters") return;
      const body = JSON.parse(event.data) as { groups?: Record<string, { unread?: number }> };
      stream.events.push({ at, unread: body.groups?.[groupId]?.unread ?? 0 });
    },
  ).catch((err) => {
    stream.error = err as Error;
  });
  return stream;
}

async function until(what: string, timeoutMs: number, done: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`${what} within ${timeoutMs / 1000} s`);
    await sleep(100);
  }
}

/**
 * Sends from `senders` in turn to `groupId` for `seconds`, one every 1/`rate` s whatever the answers
 * take (an open loop: a slow answer delays no later send), from this process. Resolves to how many
 * were refused.
 */
async function paceSends(
  ctx: Ctx,
  groupId: string,
  senders: string[],
  rate: number,
  seconds: number,
): Promise<number> {
  const started = Date.now(), total = Math.round(rate * seconds);
  const sent: Promise<boolean>[] = [];
  for (let i = 0; i < total; i++) {
    await sleep(Math.max(0, started + (i * 1000) / rate - Date.now()));
    const from = senders[i % senders.length]!;
    sent.push(
      call(ctx, ctx.dialogsUrl, from, "POST", `/api/groups/${groupId}/send`, { text: "bench" })
        .then(() => true, (err) => {
          log(`a group send was refused: ${(err as Error).message}`);
          return false;
        }),
    );
  }
  return (await Promise.all(sent)).filter((ok) => !ok).length;
}

/** (g3) `streams` members hold a stream on the one counters instance while others send. */
async function measureStreams(
  ctx: Ctx,
  groupId: string,
  holders: string[],
  senders: string[],
  options: GroupOptions,
): Promise<StreamFigures> {
  log(`(g3) ${holders.length} streams on one counters instance, sends at ${options.streamRate}/s`);
  const abort = new AbortController();
  const streams: OpenStream[] = [];
  const work = async () => {
    for (let i = 0; i < holders.length; i += 100) {
      streams.push(
        ...holders.slice(i, i + 100).map((u) => openStream(ctx, u, groupId, abort.signal)),
      );
      await until(
        "streams opened",
        60_000,
        () => streams.every((s) => s.events.length > 0 || s.error),
      );
    }
    const failed = streams.find((s) => s.error);
    if (failed) throw new Error(`a stream failed to open: ${failed.error!.message}`);
    const since = new Date();
    await paceSends(ctx, groupId, senders, options.streamRate, options.seconds);
    await waitQuiet(ctx);
    const commits = await ctx.dSql<{ at: number }[]>`
      select extract(epoch from finished_at)::float8 * 1000 as at from messages
      where group_id = ${groupId} and created_at >= ${since} and status = 'committed'
      order by seq`;
    const shown = (s: OpenStream) =>
      (s.events.at(-1)?.unread ?? 0) >= (s.events[0]?.unread ?? 0) + commits.length;
    await until("every stream showing every message", 10_000, () => streams.every(shown))
      .catch(() => {});
    return commits.map((c) => c.at);
  };
  try {
    const [commits, [rssMb = 0]] = await peakRss([ctx.world.counters.pid!], work());
    const { samples, missing } = streamLatencies(commits, streams.map((s) => s.events));
    const ended = streams.filter((s) => s.error).length;
    if (ended) log(`(g3) ${ended} streams ended early`);
    log(
      `(g3) ${commits.length} messages, ${samples.length} events, p99 ${
        percentile(samples, 99).toFixed(0)
      } ms, ${missing} never shown; counters RSS ${rssMb.toFixed(0)} MB`,
    );
    return {
      streams: holders.length,
      messages: commits.length,
      rate: options.streamRate,
      samples: samples.length,
      missing,
      p50Ms: percentile(samples, 50),
      p99Ms: percentile(samples, 99),
      maxMs: samples.length ? Math.max(...samples) : 0,
      rssMb,
    };
  } finally {
    abort.abort();
    await Promise.race([Promise.all(streams.map((s) => s.ended)), sleep(5_000)]);
  }
}

/** (g1) to (g3) on `world`, whose services are running. */
export async function measureGroups(
  world: BenchWorld,
  options: GroupOptions,
): Promise<GroupFigures> {
  const url = (p: { port: number }) => `http://127.0.0.1:${p.port}`;
  const ctx: Ctx = {
    world,
    dialogsUrl: url(world.dialogs),
    countersUrl: url(world.counters),
    dSql: postgres(world.dbUrl(world.dbs.dialogs), { max: 2, onnotice: () => {} }),
    cSql: postgres(world.dbUrl(world.dbs.counters), { max: 2, onnotice: () => {} }),
    tokens: new Map(),
  };
  try {
    const large = ids(options.members), pair = ids(2);
    await signAll(ctx, [...large, ...pair]);
    log(`(g1) a ${options.members.toLocaleString("en-US")}-member group and a 2-member group`);
    const largeId = await createGroup(ctx, "bench large", large);
    const pairId = await createGroup(ctx, "bench pair", pair);
    await waitForMembers(ctx, [largeId, pairId], options.members + 2);
    // The stream holders (g3) send nothing, so each message raises every holder's unread by one.
    const holders = large.slice(1, 1 + options.streams);
    const senders = large.slice(1 + options.streams).slice(0, 1_000);
    let ceiling = 0;
    if (!options.rate) {
      log("(g1) the 2-member group's sends at full speed");
      ceiling = await groupCeiling(ctx, pairId, pair, options.seconds);
    }
    // Both groups are sent to at once for the latency ratio: together half the ceiling.
    const rate = options.rate ?? Math.max(1, Math.floor(ceiling / 4));
    log(`(g1) rows: sends at ${rate}/s to the 2-member group, then to the large one`);
    const smallRows = await measureGroupSends(ctx, pairId, 2, pair, rate, options.seconds);
    const bigRows = await measureGroupSends(
      ctx,
      largeId,
      options.members,
      senders,
      rate,
      options.seconds,
    );
    log(`(g1) latency: sends at ${rate}/s to each group, both in the same window`);
    const [small, big] = await sendsTogether(
      ctx,
      [{ id: pairId, senders: pair, rows: smallRows }, { id: largeId, senders, rows: bigRows }],
      rate,
      options.seconds,
    );
    const streams = await measureStreams(ctx, largeId, holders, senders, options);
    const reads = await measureGroupReads(ctx, options);
    return {
      rate,
      ceiling,
      large: big!,
      small: small!,
      conversations: CONVERSATIONS,
      readers: READERS,
      groupSize: (READERS * CONVERSATIONS) / GROUPS,
      ...reads,
      streams,
    };
  } finally {
    await ctx.dSql.end();
    await ctx.cSql.end();
  }
}
