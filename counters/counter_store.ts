/**
 * Postgres access for counters: the saga's ledger (load an entry, let saga.ts decide, write what it
 * says), the counters it changes, and reading a user's counters.
 */
import { pipelinedTransaction, type Sql, type Tx } from "../shared/db.ts";
import { createEvent, type Envelope, type EventData } from "../shared/events.ts";
import type { GroupCounters, Membership, UserCounters } from "./counters.ts";
import {
  type CountedReply,
  decide,
  type LedgerDecision,
  type LedgerEntry,
  type LedgerEvent,
} from "./saga.ts";

/** What a ledger transaction is: a dialog send, a read, a group send or a dialog delete. */
export type LedgerKind = "send" | "read" | "group_send" | "delete";

/**
 * An event for the ledger: its saga transaction, whose counter it concerns, and what happened. A
 * group send's transaction (kind "group_send") has the sender as `userId` and the group as
 * `peerId`; it changes no unread counter (delta 0) but gives the message the group's next seq.
 */
export interface LedgerChange {
  transactionId: string;
  userId: string;
  peerId: string;
  messageId?: string;
  requestId?: string;
  /** The trace the change belongs to (tracing on); its reply continues it. */
  traceparent?: string | null;
  event: LedgerEvent;
  /** "read" for a read event and "send" otherwise, unless given. */
  kind?: LedgerKind;
  /** A group send's mentions: the members it names, and whether it names `all`. */
  mentions?: { userIds: string[]; all: boolean };
}

/**
 * What decide() said for a change, with the seq a group send was given (counted ones only) and, for
 * a send, the reply to publish once the transaction committed (the transaction writes none).
 */
export type AppliedChange = LedgerDecision & {
  seq?: number;
  replyEvent?: Envelope<"counters.message.counted">;
};

function kindOf(change: LedgerChange): LedgerKind {
  return change.kind ?? (change.event.type === "read" ? "read" : "send");
}

/**
 * Applies `changes` in one transaction: BEGIN with the users' locks and the transactions' ledger
 * entries; then what decide() says for each, in order (entries, counters, group messages,
 * versions), with the COMMIT. Two round trips; three when group sends are counted (their seqs come
 * back first). The replies are returned, not written: the caller publishes them after the COMMIT
 * (counter_events.ts), and a repeat of the send answers again under the ledger's reply id. A transaction given twice meets its own new
 * entry the second time. Changes of one counter add up before the clamp at zero, so batch only
 * changes that agree in sign (sends); cancels, reads and deletes go one at a time.
 */
export async function applyToLedger(
  sql: Sql,
  changes: LedgerChange[],
): Promise<AppliedChange[]> {
  return await pipelinedTransaction(sql, async (tx, withCommit) => {
    const [, loaded] = await Promise.all([
      lockUsers(tx, changes.map((c) => c.userId)),
      loadLedgerEntries(tx, changes.map((c) => c.transactionId)),
    ]);
    const entries = new Map([...loaded].map(([key, row]) => [key, row.entry]));
    const seqs = new Map([...loaded].map(([key, row]) => [key, row.seq]));
    const written = new Map<string, { change: LedgerChange; entry: LedgerEntry }>();
    const decisions = changes.map((change) => {
      const key = change.transactionId.toLowerCase();
      let decision = decide(entries.get(key), change.event);
      // A group send counts on positions, not on a counter: its entry contributes nothing.
      if (kindOf(change) === "group_send") {
        decision = {
          ...decision,
          delta: 0,
          ...(decision.entry ? { entry: { ...decision.entry, delta: 0 } } : {}),
        };
      }
      if (decision.entry) {
        entries.set(key, decision.entry);
        written.set(key, { change, entry: decision.entry });
      }
      return decision;
    });
    const groupSends = changes.flatMap((change, i) =>
      kindOf(change) === "group_send" && decisions[i]!.step === "count" ? [change] : []
    );
    const given = await assignSeqs(tx, groupSends.map((c) => c.peerId));
    groupSends.forEach((c, i) => seqs.set(c.transactionId.toLowerCase(), given[i]!));
    const seqOf = (change: LedgerChange) => seqs.get(change.transactionId.toLowerCase()) ?? null;
    const counts = decisions.flatMap((d, i) =>
      d.delta === 0
        ? []
        : [{ userId: changes[i]!.userId, peerId: changes[i]!.peerId, delta: d.delta }]
    );
    const messages = groupSends.map((c) => groupMessage(c, seqOf(c)!));
    const undone = changes.flatMap((change, i) =>
      kindOf(change) === "group_send" && decisions[i]!.step === "undo the count" &&
        seqOf(change) !== null
        ? [{ groupId: change.peerId, seq: seqOf(change)! }]
        : []
    );
    withCommit(writeLedgerEntries(tx, [...written.values()], seqOf));
    withCommit(addToCounters(tx, counts));
    withCommit(insertGroupMessages(tx, messages));
    withCommit(bumpVersions(tx, [
      ...counts.map((c) => c.userId),
      ...messages.flatMap((m) => [m.senderId, ...m.mentions]),
    ]));
    for (const u of undone) markGroupMessageDeleted(tx, u.groupId, u.seq).forEach(withCommit);
    return decisions.map((d, i) => {
      const seq = d.reply?.outcome === "counted" ? seqOf(changes[i]!) : null;
      return {
        ...d,
        ...(seq !== null ? { seq } : {}),
        ...(d.reply ? { replyEvent: countedReply(changes[i]!, d.reply, seq) } : {}),
      };
    });
  });
}

/**
 * The cache keys of the states a counted send changed: a dialog send its recipient's; a group send
 * its group's, its sender's and those of the members it names (group_mentions rows, see
 * groupMessage; @all is the group's state).
 */
export function countedSendKeys(change: LedgerChange): string[] {
  if (kindOf(change) !== "group_send") return [userKey(change.userId)];
  const message = groupMessage(change, 0);
  return [
    groupKey(message.groupId),
    userKey(message.senderId),
    ...message.mentions.map(userKey),
  ];
}

/** A counted group send as group_messages and group_mentions rows: named members, never the sender. */
function groupMessage(change: LedgerChange, seq: number) {
  const senderId = change.userId.toLowerCase();
  const named = (change.mentions?.userIds ?? []).map((u) => u.toLowerCase());
  return {
    groupId: change.peerId.toLowerCase(),
    seq,
    messageId: change.messageId!,
    senderId,
    mentionsAll: change.mentions?.all ?? false,
    mentions: [...new Set(named)].filter((u) => u !== senderId).sort(),
  };
}

/**
 * The next seq of each group, one per send in order (a group named k times moves k on), with the
 * group's version; a group counted for the first time gets its row. Groups are taken in sorted
 * order, so two batches never deadlock on them. A CHECK on group_counters refuses here.
 */
async function assignSeqs(tx: Tx, groupIds: string[]): Promise<number[]> {
  if (groupIds.length === 0) return [];
  const wanted = new Map<string, number>();
  for (const g of groupIds.map((g) => g.toLowerCase())) wanted.set(g, (wanted.get(g) ?? 0) + 1);
  const groups = [...wanted.keys()].sort();
  const rows = await tx<{ group_id: string; last_seq: string }[]>`
    insert into group_counters as c (group_id, last_seq, version)
    select g, k, 1 from unnest(${groups}::uuid[], ${groups.map((g) => wanted.get(g)!)}::int[])
      as x(g, k)
    order by g
    on conflict (group_id) do update
    set last_seq = c.last_seq + excluded.last_seq, version = c.version + 1
    returning group_id, last_seq`;
  const next = new Map(
    rows.map((r) => [r.group_id, Number(r.last_seq) - wanted.get(r.group_id)! + 1]),
  );
  return groupIds.map((g) => {
    const key = g.toLowerCase();
    const seq = next.get(key)!;
    next.set(key, seq + 1);
    return seq;
  });
}

/** Writes counted group messages and their named mentions (two statements, none when empty). */
function insertGroupMessages(
  tx: Tx,
  messages: ReturnType<typeof groupMessage>[],
): PromiseLike<unknown> {
  if (messages.length === 0) return Promise.resolve();
  const mentions = messages.flatMap((m) => m.mentions.map((u) => ({ ...m, userId: u })));
  const column = <T>(f: (m: ReturnType<typeof groupMessage>) => T) => messages.map(f);
  // Booleans travel as text (see applyGroupMembersChanged).
  return Promise.all([
    tx`
      insert into group_messages (group_id, seq, message_id, sender_id, mentions_all)
      select * from unnest(${column((m) => m.groupId)}::uuid[], ${column((m) => m.seq)}::bigint[],
                           ${column((m) => m.messageId)}::uuid[],
                           ${column((m) => m.senderId)}::uuid[],
                           ${column((m) => String(m.mentionsAll))}::text[]::boolean[])`.execute(),
    mentions.length === 0 ? Promise.resolve() : tx`
      insert into group_mentions (user_id, group_id, seq)
      select * from unnest(${mentions.map((m) => m.userId)}::uuid[],
                           ${mentions.map((m) => m.groupId)}::uuid[],
                           ${mentions.map((m) => m.seq)}::bigint[])`.execute(),
  ]);
}

/**
 * Marks a counted group message deleted so it counts for no one, once: the group's version and the
 * versions of its sender and named members go up (their states held it as own or as a mention).
 * Two statements, the group's row first (every writer takes the group before users' versions). The
 * mention rows stay; the loaders skip deleted messages, and a repeat finds whom to refresh.
 */
export function markGroupMessageDeleted(
  tx: Tx,
  groupId: string,
  seq: number,
): PromiseLike<unknown>[] {
  return [
    tx`
      update group_counters set version = version + 1
      where group_id = ${groupId}
        and exists (select 1 from group_messages
                    where group_id = ${groupId} and seq = ${seq} and not deleted)`.execute(),
    tx`
      with marked as (
        update group_messages set deleted = true
        where group_id = ${groupId} and seq = ${seq} and not deleted
        returning sender_id
      ), users as (
        select sender_id as user_id from marked
        union
        select m.user_id from group_mentions m
        where m.group_id = ${groupId} and m.seq = ${seq} and exists (select 1 from marked)
      )
      insert into counter_versions (user_id, version)
      select user_id, 1 from users order by user_id
      on conflict (user_id) do update set version = counter_versions.version + 1`.execute(),
  ];
}

/** Namespace of the per-user advisory locks (the second key is the user id's hash). */
const USER_LOCK_NAMESPACE = 7_206_118;

/**
 * Serialises every change of these users' counters: the saga and the reconciler take this lock
 * before they load, so each decides on the ledger and counters as they are, and the reconciler
 * never sees a ledger entry without its counter change or the reverse. Taken in sorted order, so
 * two batches sharing users never deadlock. Sent at once, not when awaited: the statements made
 * after it travel with it and run under it.
 */
export function lockUsers(tx: Tx, userIds: string[]): PromiseLike<unknown> {
  const users = [...new Set(userIds.map((u) => u.toLowerCase()))].sort();
  return tx`select pg_advisory_xact_lock(${USER_LOCK_NAMESPACE}, hashtext(u))
            from unnest(${users}::text[]) as u`.execute();
}

/** The ledger entries of these transactions with their seqs (group sends), by lower-case id. */
async function loadLedgerEntries(tx: Tx, transactionIds: string[]) {
  const rows = await tx<(LedgerEntry & { transaction_id: string; seq: string | null })[]>`
    select transaction_id, outcome, delta, reason, reply_event_id as "replyId", seq from ledger
    where transaction_id = any(${transactionIds}::uuid[])`;
  return new Map(
    rows.map(({ transaction_id, seq, ...entry }) => [
      transaction_id,
      { entry, seq: seq === null ? null : Number(seq) },
    ]),
  );
}

/** Inserts new ledger entries and updates changed ones, in one statement. */
function writeLedgerEntries(
  tx: Tx,
  written: { change: LedgerChange; entry: LedgerEntry }[],
  seqOf: (change: LedgerChange) => number | null,
): PromiseLike<unknown> {
  if (written.length === 0) return Promise.resolve();
  const column = <T>(f: (w: { change: LedgerChange; entry: LedgerEntry }) => T) => written.map(f);
  return tx`
    insert into ledger (transaction_id, kind, user_id, peer_id, message_id, outcome, delta, reason,
                        reply_event_id, seq)
    select t, k, u, p, m, o, d, r, y, s
    from unnest(${column((w) => w.change.transactionId)}::uuid[],
                ${column((w) => kindOf(w.change))}::text[],
                ${column((w) => w.change.userId)}::uuid[], ${
    column((w) => w.change.peerId)
  }::uuid[],
                ${column((w) => w.change.messageId ?? null)}::uuid[],
                ${column((w) => w.entry.outcome)}::text[], ${column((w) => w.entry.delta)}::int[],
                ${column((w) => w.entry.reason)}::text[], ${column((w) => w.entry.replyId)}::uuid[],
                ${column((w) => seqOf(w.change))}::bigint[])
      as x(t, k, u, p, m, o, d, r, y, s)
    on conflict (transaction_id) do update
    set outcome = excluded.outcome, delta = excluded.delta, reason = excluded.reason,
        reply_event_id = excluded.reply_event_id, seq = coalesce(excluded.seq, ledger.seq),
        updated_at = now()`;
}

/**
 * Adds each delta to its counter, never below zero, in one statement; deltas for one counter add
 * up first.
 */
export function addToCounters(
  tx: Tx,
  changes: { userId: string; peerId: string; delta: number }[],
): PromiseLike<unknown> {
  const byPair = new Map<string, { user: string; peer: string; delta: number }>();
  for (const c of changes) {
    const [user, peer] = [c.userId.toLowerCase(), c.peerId.toLowerCase()];
    const pair = byPair.get(`${user}|${peer}`) ?? { user, peer, delta: 0 };
    pair.delta += c.delta;
    byPair.set(`${user}|${peer}`, pair);
  }
  const pairs = [...byPair.values()];
  if (pairs.length === 0) return Promise.resolve();
  // A new row starts at the delta (clamped); an existing one takes its own delta from `change`.
  return tx`
    with change as (
      select * from unnest(${pairs.map((p) => p.user)}::uuid[], ${pairs.map((p) => p.peer)}::uuid[],
                           ${pairs.map((p) => p.delta)}::int[]) as c(user_id, peer_id, delta)
    )
    insert into unread_counters as t (user_id, peer_id, unread)
    select user_id, peer_id, greatest(0, delta) from change
    on conflict (user_id, peer_id) do update
    set unread = greatest(0, t.unread + (select delta from change c
                                         where c.user_id = excluded.user_id
                                           and c.peer_id = excluded.peer_id)),
        updated_at = now()`;
}

/**
 * Increments each user's counter version (the caches and live streams order changes by it), in
 * sorted order so concurrent bumps of the same users never deadlock.
 */
export function bumpVersions(tx: Tx, userIds: string[]): PromiseLike<unknown> {
  const users = [...new Set(userIds.map((u) => u.toLowerCase()))].sort();
  if (users.length === 0) return Promise.resolve();
  return tx`
    insert into counter_versions (user_id, version)
    select u, 1 from unnest(${users}::uuid[]) as u order by u
    on conflict (user_id) do update set version = counter_versions.version + 1`;
}

/** The reply to a "message sent": its outcome, under the id the ledger remembers for it. */
function countedReply(change: LedgerChange, reply: CountedReply, seq: number | null) {
  return createEvent("counters.message.counted", {
    transactionId: change.transactionId,
    messageId: change.messageId!,
    outcome: reply.outcome,
    ...(reply.reason ? { reason: reply.reason } : {}),
    ...(reply.outcome === "counted" && seq !== null ? { seq } : {}),
  }, { id: reply.replyId, requestId: change.requestId, traceparent: change.traceparent ?? null });
}

/** What applying a cancel did: `undone` when it took back an increment. */
export type CancelResult = "undone" | "remembered" | "nothing";

/**
 * Undoes a timed-out send: a counted increment is taken back; a send not seen yet is remembered as
 * cancelled so its late "message sent" changes nothing; a failed or cancelled one stays as it is.
 */
export async function applyMessageCancelled(
  sql: Sql,
  data: EventData<"dialogs.message.cancelled">,
): Promise<CancelResult> {
  const [decision] = await applyToLedger(sql, [{
    transactionId: data.transactionId,
    userId: data.recipientId,
    peerId: data.senderId,
    messageId: data.messageId,
    event: { type: "cancelled", reason: data.reason },
  }]);
  const step = decision!.step;
  return step === "undo the count"
    ? "undone"
    : step === "remember the cancel"
    ? "remembered"
    : "nothing";
}

/** Applies a read once: the reader's counter for the peer goes down by the number read. */
export async function applyMessagesRead(
  sql: Sql,
  data: EventData<"dialogs.messages.read">,
): Promise<boolean> {
  const [decision] = await applyToLedger(sql, [{
    transactionId: data.transactionId,
    userId: data.readerId,
    peerId: data.peerId,
    event: { type: "read", count: data.count },
  }]);
  return decision!.step === "read";
}

/** The cache key of a user's state (counters' caches key user and group states apart). */
export function userKey(userId: string): string {
  return `user:${userId.toLowerCase()}`;
}

/** The cache key of a group's state. */
export function groupKey(groupId: string): string {
  return `group:${groupId.toLowerCase()}`;
}

/** What applying a group cancel did, and the cache keys to refresh (none when remembered). */
export interface GroupCancelResult {
  result: CancelResult;
  keys: string[];
}

/**
 * Undoes a timed-out group send through the ledger: a counted one is marked deleted (its seq then
 * counts for no one; group, sender and named members' versions go up); one not seen yet is
 * remembered, so its late "message sent" is answered "failed" and gets no seq.
 */
export async function applyGroupMessageCancelled(
  sql: Sql,
  data: EventData<"dialogs.group.message.cancelled">,
): Promise<GroupCancelResult> {
  const [decision] = await applyToLedger(sql, [{
    transactionId: data.transactionId,
    userId: data.senderId,
    peerId: data.groupId,
    messageId: data.messageId,
    kind: "group_send",
    event: { type: "cancelled", reason: data.reason },
  }]);
  const step = decision!.step;
  if (step === "remember the cancel") return { result: "remembered", keys: [] };
  return {
    result: step === "undo the count" ? "undone" : "nothing",
    keys: await groupMessageKeys(sql, data.groupId, data.senderId, data.messageId),
  };
}

/**
 * Marks a deleted group message so it counts for no one; a repeat changes nothing. Returns the
 * cache keys to refresh: the group, the sender and the members it named.
 */
export async function applyGroupMessageDeleted(
  sql: Sql,
  data: EventData<"dialogs.group.message.deleted">,
): Promise<string[]> {
  await pipelinedTransaction(sql, (tx, withCommit) => {
    markGroupMessageDeleted(tx, data.groupId, data.seq).forEach(withCommit);
    return Promise.resolve();
  });
  return await groupMessageKeys(sql, data.groupId, data.senderId, data.messageId);
}

/** The cache keys a group message's changes touch: its group, its sender and its named members. */
export async function groupMessageKeys(
  sql: Sql,
  groupId: string,
  senderId: string,
  messageId: string,
): Promise<string[]> {
  const named = await sql<{ user_id: string }[]>`
    select m.user_id from group_messages g
    join group_mentions m on m.group_id = g.group_id and m.seq = g.seq
    where g.group_id = ${groupId} and g.message_id = ${messageId}`;
  return [
    ...new Set([groupKey(groupId), userKey(senderId), ...named.map((n) => userKey(n.user_id))]),
  ];
}

/**
 * Takes a dialog delete back once: the recipient's count for the sender goes down by one (a ledger
 * entry of kind "delete" under the delete's own transaction id). Returns whether it applied.
 */
export async function applyMessageDeleted(
  sql: Sql,
  data: EventData<"dialogs.message.deleted">,
): Promise<boolean> {
  const [decision] = await applyToLedger(sql, [{
    transactionId: data.transactionId,
    userId: data.recipientId,
    peerId: data.senderId,
    messageId: data.messageId,
    kind: "delete",
    event: { type: "read", count: 1 },
  }]);
  return decision!.step === "read";
}

/**
 * Keeps the newest state of each member (by version; an older or repeated one changes nothing)
 * and raises the versions of the users whose state changed: by one, and on a leave by one more
 * than the group's version, since the group's version then leaves their composed version. The
 * group's row is locked first when someone leaves, so no group change slips between. Returns the
 * users whose state changed.
 */
export async function applyGroupMembersChanged(
  sql: Sql,
  data: EventData<"dialogs.group.members.changed">,
): Promise<string[]> {
  const newest = new Map<string, (typeof data.members)[number]>();
  for (const m of data.members) {
    const user = m.userId.toLowerCase();
    if ((newest.get(user)?.version ?? 0) < m.version) newest.set(user, { ...m, userId: user });
  }
  const members = [...newest.values()].sort((a, b) => a.userId.localeCompare(b.userId));
  const column = <T>(f: (m: (typeof members)[number]) => T) => members.map(f);
  // Booleans travel as text: postgres.js sends a boolean array as a single boolean.
  const leaves = members.some((m) => !m.member);
  return await pipelinedTransaction(sql, async (tx) => {
    const [, changed] = await Promise.all([
      tx`select 1 from group_counters where group_id = ${data.groupId} and ${leaves}
         for update`.execute(),
      tx<{ user_id: string }[]>`
        with incoming as (
          select * from unnest(${column((m) => m.userId)}::uuid[],
                               ${column((m) => String(m.member))}::text[]::boolean[],
                               ${column((m) => m.joinedSeq)}::bigint[],
                               ${column((m) => m.readSeq)}::bigint[],
                               ${column((m) => String(m.muted))}::text[]::boolean[],
                               ${column((m) => m.version)}::bigint[])
            as i(user_id, member, joined_seq, read_seq, muted, version)
        ), kept as (
          insert into group_members as g
            (user_id, group_id, member, joined_seq, read_seq, muted, version)
          select user_id, ${data.groupId}, member, joined_seq, read_seq, muted, version
          from incoming order by user_id
          on conflict (user_id, group_id) do update
          set member = excluded.member, joined_seq = excluded.joined_seq,
              read_seq = excluded.read_seq, muted = excluded.muted, version = excluded.version
          where g.version < excluded.version
          returning user_id, member
        )
        insert into counter_versions as v (user_id, version)
        select user_id,
               case when member then 1
                    else 1 + coalesce((select version from group_counters
                                       where group_id = ${data.groupId}), 0) end
        from kept order by user_id
        on conflict (user_id) do update set version = v.version + excluded.version
        returning user_id`,
    ]);
    return changed.map((c) => c.user_id);
  });
}

/** Keeps the newest mute state of a dialog (by version); raises the user's version when it changed. */
export async function applyDialogMuted(
  sql: Sql,
  data: EventData<"dialogs.dialog.muted">,
): Promise<boolean> {
  const changed = await sql`
    with kept as (
      insert into dialog_mutes as d (user_id, peer_id, muted, version)
      values (${data.userId}, ${data.peerId}, ${data.muted}, ${data.version})
      on conflict (user_id, peer_id) do update
      set muted = excluded.muted, version = excluded.version
      where d.version < excluded.version
      returning user_id
    )
    insert into counter_versions as v (user_id, version)
    select user_id, 1 from kept
    on conflict (user_id) do update set version = v.version + 1
    returning user_id`;
  return changed.length > 0;
}

/**
 * Rows counting one group message writes in the counters database, whatever the group's size: its
 * ledger entry, its group's counter (shared by the group's sends of one batch), its group_messages
 * row, the sender's version, and per member it names a group_mentions row
 * and that member's version. @all names no one: it is one flag on the message.
 */
export function rowsWrittenPerGroupMessage(namedMentions: number): number {
  return 4 + 2 * namedMentions;
}

/** A user's counters and version, read in one statement so both come from one snapshot. */
export async function loadUserCounters(sql: Sql, userId: string): Promise<UserCounters> {
  return (await loadManyUserCounters(sql, [userId]))[0]!;
}

/**
 * loadUserCounters for several users in one statement; in the order of `userIds`. Each user's
 * state: dialog counts, muted dialogs, and per group the user is a member of its positions with
 * the user's own messages and the messages naming the user, not deleted, after the position.
 * `muted` and `groups` are left out when empty.
 */
export async function loadManyUserCounters(sql: Sql, userIds: string[]): Promise<UserCounters[]> {
  const rows = await sql<{
    version: string;
    dialogs: Record<string, number>;
    muted: string[];
    groups: Record<string, Membership>;
  }[]>`
    select
      coalesce((select version from counter_versions v where v.user_id = u), 0) as version,
      coalesce((select json_object_agg(peer_id, unread) from unread_counters c
                where c.user_id = u and unread > 0), '{}'::json) as dialogs,
      coalesce((select json_agg(peer_id order by peer_id) from dialog_mutes d
                where d.user_id = u and d.muted), '[]'::json) as muted,
      coalesce((select json_object_agg(m.group_id, json_build_object(
                  'joinedSeq', m.joined_seq, 'readSeq', m.read_seq, 'muted', m.muted,
                  'own', coalesce((select json_agg(g.seq order by g.seq) from group_messages g
                                   where g.group_id = m.group_id and g.sender_id = u
                                     and g.seq > greatest(m.joined_seq, m.read_seq)
                                     and not g.deleted), '[]'::json),
                  'mentions', coalesce((select json_agg(x.seq order by x.seq)
                                        from group_mentions x
                                        join group_messages g
                                          on g.group_id = x.group_id and g.seq = x.seq
                                        where x.user_id = u and x.group_id = m.group_id
                                          and x.seq > greatest(m.joined_seq, m.read_seq)
                                          and not g.deleted), '[]'::json)))
                from group_members m where m.user_id = u and m.member), '{}'::json) as groups
    from unnest(${userIds}::uuid[]) with ordinality as x(u, n)
    order by n`;
  return rows.map((row) => ({
    version: Number(row.version),
    dialogs: row.dialogs,
    ...(row.muted.length > 0 ? { muted: row.muted } : {}),
    ...(Object.keys(row.groups).length > 0 ? { groups: row.groups } : {}),
  }));
}

/**
 * The states of these groups in one statement, in the order of `groupIds`: version, newest seq,
 * the seqs that count for no one (deleted or cancelled) and those mentioning `all`. A group
 * counters never counted a message of is `{version 0, lastSeq 0, [], []}`.
 */
export async function loadManyGroupCounters(
  sql: Sql,
  groupIds: string[],
): Promise<GroupCounters[]> {
  const rows = await sql<
    { version: string; last_seq: string; deleted: number[]; mentions_all: number[] }[]
  >`
    select
      coalesce(c.version, 0) as version,
      coalesce(c.last_seq, 0) as last_seq,
      coalesce((select json_agg(g.seq order by g.seq) from group_messages g
                where g.group_id = x.g and g.deleted), '[]'::json) as deleted,
      coalesce((select json_agg(g.seq order by g.seq) from group_messages g
                where g.group_id = x.g and g.mentions_all and not g.deleted), '[]'::json)
        as mentions_all
    from unnest(${groupIds}::uuid[]) with ordinality as x(g, n)
    left join group_counters c on c.group_id = x.g
    order by n`;
  return rows.map((row) => ({
    version: Number(row.version),
    lastSeq: Number(row.last_seq),
    deleted: row.deleted,
    mentionsAll: row.mentions_all,
  }));
}
