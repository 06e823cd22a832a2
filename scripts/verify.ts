/**
 * `deno task verify`: compares every counter with the truth in the dialogs database — in the counters
 * tables and, for each instance in `COUNTERS_URLS`, as that instance serves it — prints the drift,
 * exits 0 when there is none and 1 when there is any (2 when a database or an instance cannot be read).
 *
 * The truth (contract, "The invariant, extended"): per dialog, the committed unread messages from the
 * peer (a deleted message has status `deleted` and no longer counts); per member U of group G, the
 * committed messages of G by others with a seq above both U's joinedSeq and readSeq, and of those
 * the ones naming U or `all`; the muted dialogs and groups; `total` (the unread of every conversation
 * not muted) and `mentions` (the mentions of every group). Group counts are computed per group in
 * SQL, one pass over the group's messages and members, never per member per message.
 */
import postgres from "postgres";
import { z } from "zod";
import { commonEnv, databaseUrl, parseEnv } from "../shared/config.ts";
import { redactUrl, type Sql } from "../shared/db.ts";
import { signToken } from "../shared/auth.ts";
import { findDrift, type PairCount } from "../counters/drift.ts";

/** One member's counts in one group, with its mute. */
export interface MemberCount {
  userId: string;
  groupId: string;
  unread: number;
  mentions: number;
  muted: boolean;
}

/** A muted dialog: `userId` muted `peerId`. */
export interface DialogMute {
  userId: string;
  peerId: string;
}

/** Every count of a system, as the dialogs database says it must be or as counters stores it. */
export interface Counts {
  /** (user, peer) with unread messages; a pair not listed has 0. */
  dialogs: PairCount[];
  /** Every current member of every group; a user not listed is no member. */
  groups: MemberCount[];
  /** Every muted dialog. */
  dialogMutes: DialogMute[];
}

/** What differs: the unread of a dialog or group, a group's mentions, a mute or a membership. */
export type DriftKind = "unread" | "mentions" | "muted" | "member";

/** A stored count that differs from the truth; `peerId` is the peer or the group. */
export interface CounterDrift {
  userId: string;
  peerId: string;
  what: DriftKind;
  expected: number;
  actual: number;
}

// Whether a table exists: a database from before the groups migration has none of its tables.
async function hasTable(sql: Sql, table: string): Promise<boolean> {
  const [row] = await sql<{ found: boolean }[]>`select to_regclass(${table}) is not null as found`;
  return row!.found;
}

/** A member's position and the counts of messages after it that hold for every member. */
interface Position {
  userId: string;
  groupId: string;
  muted: boolean;
  /** The group's last seq (counters) or 0 (dialogs). */
  lastSeq: number;
  p: number;
  /** After the position: committed messages (dialogs) or deleted ones (counters). */
  n: number;
  /** After the position: messages to `all`, not deleted. */
  alls: number;
}

/** What one member's own messages and named mentions after its position subtract or add. */
interface Exceptions {
  userId: string;
  groupId: string;
  own: number;
  ownAlls: number;
  named: number;
}

// Two plain statements joined here by member, rather than one whose plan depends on estimates:
// each is one pass over the group's messages and members.
function byMember(exceptions: Exceptions[]): Map<string, Exceptions> {
  return new Map(exceptions.map((e) => [memberKey(e), e]));
}

/**
 * The truth in the dialogs database. Per group one window pass over its committed messages and its
 * members' positions counts the messages after each position; each member's own messages and named
 * mentions are joined by index, so the work grows with messages + members, not their product.
 */
export async function readTruth(dialogs: Sql): Promise<Counts> {
  const pairs = await dialogs<PairCount[]>`
    select recipient_id as "userId", sender_id as "peerId", count(*)::int as unread
    from messages where status = 'committed' and read_at is null and recipient_id is not null
    group by recipient_id, sender_id`;
  if (!await hasTable(dialogs, "group_members")) {
    return { dialogs: pairs, groups: [], dialogMutes: [] };
  }
  // Newest first, a member before a message of the same seq: at each member's row the running
  // sums hold exactly the messages with a greater seq than its position.
  const positions = await dialogs<Position[]>`
    select "userId", "groupId", muted, 0 as "lastSeq", p::int, n::int, alls::int from (
      select user_id as "userId", group_id as "groupId", muted, p, msg,
        sum(msg) over w as n, sum(al) over w as alls
      from (
        select group_id, seq as p, 1 as msg, mentions_all::int as al, null::uuid as user_id,
          false as muted
        from messages where group_id is not null and status = 'committed' and seq is not null
        union all
        select group_id, greatest(joined_seq, read_seq), 0, 0, user_id, muted
        from group_members where member
      ) marks
      window w as (partition by group_id order by p desc, msg rows unbounded preceding)
    ) running where msg = 0`;
  const exceptions = await dialogs<Exceptions[]>`
    with pos as (
      select group_id, user_id, greatest(joined_seq, read_seq) as p from group_members where member
    ), msgs as (
      select group_id, seq, sender_id, mentions, mentions_all from messages
      where group_id is not null and status = 'committed' and seq is not null
    ), named as materialized ( -- one row per (message, user it names): joined by member after
      select m.group_id, u.user_id, m.seq from msgs m, unnest(m.mentions) as u(user_id)
      where not m.mentions_all and m.sender_id <> u.user_id
    )
    select user_id as "userId", group_id as "groupId", sum(own)::int as own,
      sum(own_all)::int as "ownAlls", count(distinct named)::int as named
    from (
      select pos.group_id, pos.user_id, 1 as own, m.mentions_all::int as own_all, null::bigint as named
      from pos join msgs m
        on m.group_id = pos.group_id and m.sender_id = pos.user_id and m.seq > pos.p
      union all
      select pos.group_id, pos.user_id, 0, 0, x.seq
      from named x join pos on pos.group_id = x.group_id and pos.user_id = x.user_id and x.seq > pos.p
    ) x group by user_id, group_id`;
  const extra = byMember(exceptions);
  const groups = positions.map((pos): MemberCount => {
    const e = extra.get(memberKey(pos));
    return {
      userId: pos.userId,
      groupId: pos.groupId,
      unread: pos.n - (e?.own ?? 0),
      mentions: pos.alls - (e?.ownAlls ?? 0) + (e?.named ?? 0),
      muted: pos.muted,
    };
  });
  const dialogMutes = await hasTable(dialogs, "dialog_mutes")
    ? await dialogs<DialogMute[]>`
      select user_id as "userId", peer_id as "peerId" from dialog_mutes where muted`
    : [];
  return { dialogs: pairs, groups, dialogMutes };
}

/**
 * The counts counters' tables hold: the non-zero dialog counters, and per current member the group
 * counts its model gives (the group's last seq, less the member's position, its own messages and the
 * deleted ones after it; the named mentions and `@all` after it, never its own), with its mutes.
 */
export async function readStored(counters: Sql): Promise<Counts> {
  const pairs = await counters<PairCount[]>`
    select user_id as "userId", peer_id as "peerId", unread from unread_counters where unread <> 0`;
  if (!await hasTable(counters, "group_members")) {
    return { dialogs: pairs, groups: [], dialogMutes: [] };
  }
  const positions = await counters<Position[]>`
    select "userId", "groupId", muted, coalesce(g.last_seq, 0)::int as "lastSeq", p::int, n::int,
      alls::int
    from (
      select user_id as "userId", group_id as "groupId", muted, p, msg,
        sum(del) over w as n, sum(al) over w as alls
      from (
        select group_id, seq as p, 1 as msg, deleted::int as del,
          (mentions_all and not deleted)::int as al, null::uuid as user_id, false as muted
        from group_messages where deleted or mentions_all
        union all
        select group_id, greatest(joined_seq, read_seq), 0, 0, 0, user_id, muted
        from group_members where member
      ) marks
      window w as (partition by group_id order by p desc, msg rows unbounded preceding)
    ) running left join group_counters g on g.group_id = running."groupId"
    where msg = 0`;
  const exceptions = await counters<Exceptions[]>`
    with pos as (
      select m.group_id, m.user_id, greatest(m.joined_seq, m.read_seq) as p,
        coalesce(g.last_seq, 0) as last_seq
      from group_members m left join group_counters g on g.group_id = m.group_id
      where m.member
    )
    select user_id as "userId", group_id as "groupId", sum(own)::int as own,
      sum(own_all)::int as "ownAlls", sum(named)::int as named
    from (
      select pos.group_id, pos.user_id, 1 as own, m.mentions_all::int as own_all, 0 as named
      from pos join group_messages m
        on m.group_id = pos.group_id and m.sender_id = pos.user_id and m.seq > pos.p
          and m.seq <= pos.last_seq and not m.deleted
      union all
      select pos.group_id, pos.user_id, 0, 0, 1
      from group_mentions x
      join group_messages m on m.group_id = x.group_id and m.seq = x.seq and not m.deleted
      join pos on pos.group_id = x.group_id and pos.user_id = x.user_id
        and x.seq > pos.p and x.seq <= pos.last_seq
    ) x group by user_id, group_id`;
  const extra = byMember(exceptions);
  // As counters' groupCount(): nothing after a position at or past the last seq, never below 0.
  const groups = positions.map((pos): MemberCount => {
    const e = extra.get(memberKey(pos));
    const none = pos.lastSeq <= pos.p;
    return {
      userId: pos.userId,
      groupId: pos.groupId,
      unread: none ? 0 : Math.max(0, pos.lastSeq - pos.p - (e?.own ?? 0) - pos.n),
      mentions: none ? 0 : Math.max(0, (e?.named ?? 0) + pos.alls - (e?.ownAlls ?? 0)),
      muted: pos.muted,
    };
  });
  const dialogMutes = await hasTable(counters, "dialog_mutes")
    ? await counters<DialogMute[]>`
      select user_id as "userId", peer_id as "peerId" from dialog_mutes where muted`
    : [];
  return { dialogs: pairs, groups, dialogMutes };
}

const memberKey = (m: { userId: string; groupId: string }) => `${m.userId}/${m.groupId}`;
const muteKey = (m: DialogMute) => `${m.userId}/${m.peerId}`;

/** Every difference between the truth and the stored counts; missing entries count as 0. Pure. */
export function compareCounts(truth: Counts, stored: Counts): CounterDrift[] {
  const drift: CounterDrift[] = findDrift(truth.dialogs, stored.dialogs).map((d) => ({
    ...d,
    what: "unread",
  }));
  const want = new Map(truth.groups.map((m) => [memberKey(m), m]));
  const have = new Map(stored.groups.map((m) => [memberKey(m), m]));
  for (const key of new Set([...want.keys(), ...have.keys()])) {
    const t = want.get(key), s = have.get(key);
    const { userId, groupId: peerId } = (t ?? s)!;
    const push = (what: DriftKind, expected: number, actual: number) => {
      if (expected !== actual) drift.push({ userId, peerId, what, expected, actual });
    };
    push("member", t ? 1 : 0, s ? 1 : 0);
    push("unread", t?.unread ?? 0, s?.unread ?? 0);
    push("mentions", t?.mentions ?? 0, s?.mentions ?? 0);
    push("muted", t?.muted ? 1 : 0, s?.muted ? 1 : 0);
  }
  const mutedWant = new Set(truth.dialogMutes.map(muteKey));
  const mutedHave = new Set(stored.dialogMutes.map(muteKey));
  const mutes = new Map([...truth.dialogMutes, ...stored.dialogMutes].map((m) => [muteKey(m), m]));
  for (const [key, { userId, peerId }] of mutes) {
    const expected = mutedWant.has(key) ? 1 : 0, actual = mutedHave.has(key) ? 1 : 0;
    if (expected !== actual) drift.push({ userId, peerId, what: "muted", expected, actual });
  }
  return drift.sort((a, b) =>
    a.userId.localeCompare(b.userId) || a.peerId.localeCompare(b.peerId) ||
    a.what.localeCompare(b.what)
  );
}

/** The result of verifyCounters(). */
export interface VerifyResult {
  /** Every stored count that differs from the truth (dialogs and groups). */
  drift: CounterDrift[];
  /** Dialogs with unread messages checked. */
  pairs: number;
  /** Group memberships checked. */
  members: number;
  truth: Counts;
  stored: Counts;
}

/** Reads both databases and returns the drift, the truth and the stored counts. */
export async function verifyCounters(
  dialogsUrl: string,
  countersUrl: string,
): Promise<VerifyResult> {
  const dialogs = postgres(dialogsUrl, { max: 1, onnotice: () => {} });
  const counters = postgres(countersUrl, { max: 1, onnotice: () => {} });
  try {
    const truth = await readTruth(dialogs);
    const stored = await readStored(counters);
    return {
      drift: compareCounts(truth, stored),
      pairs: truth.dialogs.length,
      members: truth.groups.length,
      truth,
      stored,
    };
  } finally {
    await Promise.all([dialogs.end(), counters.end()]);
  }
}

/** The body of `GET /api/counters` the truth gives one user (entries at 0 left out). */
export interface ExpectedBody {
  total: number;
  dialogs: Record<string, number>;
  groups: Record<string, { unread: number; mentions: number }>;
  mentions: number;
  muted: string[];
}

/** The `GET /api/counters` body every user of the truth must be served. Pure. */
export function expectedBodies(truth: Counts): Map<string, ExpectedBody> {
  const bodies = new Map<string, ExpectedBody>();
  const of = (userId: string) => {
    let body = bodies.get(userId);
    if (!body) {
      body = { total: 0, dialogs: {}, groups: {}, mentions: 0, muted: [] };
      bodies.set(userId, body);
    }
    return body;
  };
  const mutedDialogs = new Set(truth.dialogMutes.map(muteKey));
  for (const m of truth.dialogMutes) of(m.userId).muted.push(m.peerId);
  for (const p of truth.dialogs) {
    if (p.unread === 0) continue;
    const body = of(p.userId);
    body.dialogs[p.peerId] = p.unread;
    if (!mutedDialogs.has(`${p.userId}/${p.peerId}`)) body.total += p.unread;
  }
  for (const m of truth.groups) {
    const body = of(m.userId);
    if (m.muted) body.muted.push(m.groupId);
    if (m.unread === 0 && m.mentions === 0) continue;
    body.groups[m.groupId] = { unread: m.unread, mentions: m.mentions };
    body.mentions += m.mentions;
    if (!m.muted) body.total += m.unread;
  }
  return bodies;
}

/** The `GET /api/counters` body a counters instance served, as far as verify reads it. */
export interface ServedBody {
  total?: number;
  dialogs?: Record<string, number>;
  groups?: Record<string, { unread?: number; mentions?: number }>;
  mentions?: number;
  muted?: string[];
}

/**
 * A count one counters instance serves that differs from the truth: `peerId` is the peer or group,
 * or `total` / `mentions` for the user's sums; `what` says which count.
 */
export interface ServedDrift {
  instance: string;
  userId: string;
  peerId: string;
  what: DriftKind | "total";
  expected: number;
  served: number;
}

/** Every difference between what `instance` served `userId` and the truth's body. Pure. */
export function compareServed(
  instance: string,
  userId: string,
  expected: ExpectedBody | undefined,
  served: ServedBody,
): ServedDrift[] {
  const want = expected ?? { total: 0, dialogs: {}, groups: {}, mentions: 0, muted: [] };
  const drift: ServedDrift[] = [];
  const push = (peerId: string, what: ServedDrift["what"], e: number, s: number) => {
    if (e !== s) drift.push({ instance, userId, peerId, what, expected: e, served: s });
  };
  const dialogs = served.dialogs ?? {}, groups = served.groups ?? {};
  for (const peer of new Set([...Object.keys(want.dialogs), ...Object.keys(dialogs)])) {
    push(peer, "unread", want.dialogs[peer] ?? 0, dialogs[peer] ?? 0);
  }
  for (const group of new Set([...Object.keys(want.groups), ...Object.keys(groups)])) {
    push(group, "unread", want.groups[group]?.unread ?? 0, groups[group]?.unread ?? 0);
    push(group, "mentions", want.groups[group]?.mentions ?? 0, groups[group]?.mentions ?? 0);
  }
  const mutedWant = new Set(want.muted), mutedServed = new Set(served.muted ?? []);
  for (const id of new Set([...mutedWant, ...mutedServed])) {
    push(id, "muted", mutedWant.has(id) ? 1 : 0, mutedServed.has(id) ? 1 : 0);
  }
  push("mentions", "mentions", want.mentions, served.mentions ?? 0);
  push("total", "total", want.total, served.total ?? 0);
  return drift;
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
  /** The truth; a user not in it expects empty counters. */
  truth: Counts;
  /** The users whose served counters are compared. */
  users: Iterable<string>;
  /** Requests in flight at once (default 16). */
  concurrency?: number;
}

/**
 * Reads `GET /api/counters` of every user on every instance and returns each count it serves that
 * differs from the truth. Throws ServedReadError when an instance does not answer 200 after five
 * tries (about 4 s).
 */
export async function verifyServed(options: VerifyServedOptions): Promise<ServedDrift[]> {
  const expected = expectedBodies(options.truth);
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
      drift.push(...compareServed(instance, userId, expected.get(userId), served));
    }
  };
  await Promise.all(Array.from({ length: options.concurrency ?? 16 }, worker));
  return drift.sort((a, b) =>
    a.instance.localeCompare(b.instance) || a.userId.localeCompare(b.userId) ||
    a.peerId.localeCompare(b.peerId) || a.what.localeCompare(b.what)
  );
}

async function readServed(instance: string, userId: string, secret: string): Promise<ServedBody> {
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
      const body = await res.json() as ServedBody;
      if (!body.dialogs || typeof body.dialogs !== "object") {
        throw new ServedReadError(instance, "the answer has no dialogs object");
      }
      return body;
    } catch (err) {
      if (err instanceof ServedReadError) throw err;
      last = err;
    }
  }
  throw new ServedReadError(instance, (last as Error).message, { cause: last });
}

/**
 * The users whose served counters verify compares: every user with a count, a mute or a group in
 * the truth, and every user with a non-zero stored counter or a stored membership.
 */
export function usersToCheck(truth: Counts, stored: Counts): Set<string> {
  const users = new Set<string>();
  for (const counts of [truth, stored]) {
    for (const p of counts.dialogs) users.add(p.userId);
    for (const m of counts.groups) users.add(m.userId);
    for (const m of counts.dialogMutes) users.add(m.userId);
  }
  return users;
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

const pad = (n: number, width: number) => String(n).padStart(width);

/** The drift of the tables as printed lines: user, peer or group, expected, actual, what. */
export function formatDrift(drift: CounterDrift[]): string[] {
  return [
    "user_id                               peer_or_group_id                      expected  actual  what",
    ...drift.map((d) =>
      `${d.userId}  ${d.peerId}  ${pad(d.expected, 8)}  ${pad(d.actual, 6)}  ${d.what}`
    ),
  ];
}

/** The served drift as printed lines: instance, user, peer or group, expected, served, what. */
export function formatServed(served: ServedDrift[]): string[] {
  return [
    "instance  user_id                               peer_or_group_id                      expected  served  what",
    ...served.map((d) =>
      `${d.instance}  ${d.userId}  ${d.peerId.padEnd(36)}  ${pad(d.expected, 8)}  ${
        pad(d.served, 6)
      }  ${d.what}`
    ),
  ];
}

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
  const checked = `${result.pairs} dialogs with unread messages and ${result.members} ` +
    `group memberships checked` +
    (instances ? `; served counters of ${users.size} users on ${instances} instance(s)` : "");
  if (result.drift.length === 0 && served.length === 0) {
    console.log(`verify: no drift (${checked})`);
    Deno.exit(0);
  }
  if (result.drift.length) {
    for (const line of formatDrift(result.drift)) console.log(line);
    console.log(`verify: drift in ${result.drift.length} counter(s)`);
  }
  if (served.length) {
    for (const line of formatServed(served)) console.log(line);
    console.log(`verify: ${served.length} served count(s) differ from the truth`);
  }
  Deno.exit(1);
}
