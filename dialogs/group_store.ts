/**
 * Postgres access for groups and mutes: membership, group sends, lists, reads and mutes. Every
 * change writes its events (dialogs.group.members.changed with the full state of each changed
 * member, at most MEMBERS_PER_EVENT per event) in the same outbox transaction.
 */
import type { Sql, Tx } from "../shared/db.ts";
import { createEvent, type Envelope } from "../shared/events.ts";
import { enqueueEvent, enqueueEvents, outboxTransaction } from "../shared/outbox.ts";
import { MESSAGE_COLUMNS, type MessageRow, normalizeMentions } from "./messages.ts";

/** A group as stored, with how many members it has now. */
export interface GroupRow {
  id: string;
  title: string;
  owner_id: string;
  created_at: Date;
  member_count: number;
}

/** A group with the caller's place in it. */
export interface GroupWithMe extends GroupRow {
  me: { joinedSeq: number; readSeq: number; muted: boolean };
}

/** A group creation after validation; `members` may repeat ids and include the owner. */
export interface CreateGroupInput {
  ownerId: string;
  title: string;
  members: string[];
  requestId?: string;
}

/** An add of members by `actorId`, who must be a member; the group may then hold `maxMembers`. */
export interface AddMembersInput {
  groupId: string;
  actorId: string;
  userIds: string[];
  maxMembers: number;
  requestId?: string;
}

/** What adding members did: how many joined, or why nothing did. */
export type AddMembersResult =
  | { kind: "added"; added: number }
  | { kind: "not_found" }
  | { kind: "too_many"; memberCount: number };

/** A leave (`actorId` = `userId`) or a removal by the owner. */
export interface RemoveMemberInput {
  groupId: string;
  actorId: string;
  userId: string;
  requestId?: string;
}

/** What a leave or removal did: `not_found` when the actor or the user is no member. */
export type RemoveMemberResult = "removed" | "not_found" | "forbidden";

/** A group send after validation; `mentions` holds user ids and `all`, possibly repeated. */
export interface GroupSendInput {
  senderId: string;
  groupId: string;
  text: string;
  mentions: string[];
  idempotencyKey?: string;
  requestId?: string;
}

/** The stored group message (created false: an Idempotency-Key replay), or why none was stored. */
export type GroupSendResult =
  | { kind: "sent"; message: MessageRow; created: boolean }
  | { kind: "not_found" }
  | { kind: "not_members"; userIds: string[] };

/** A group mark-read: up to `upTo` (a message of the group), everything committed without it. */
export interface GroupReadInput {
  readerId: string;
  groupId: string;
  upTo?: MessageRow;
  requestId?: string;
}

/** What a group mark-read did: how many unread messages it covered, and where the reader is now. */
export interface GroupReadResult {
  read: number;
  readSeq: number;
}

/** A mute of a dialog (`targetId` the peer) or a group (`targetId` the group). */
export interface MuteInput {
  userId: string;
  targetId: string;
  muted: boolean;
  requestId?: string;
}

/** A group of the caller's list: its last message the caller may see, and when it was active. */
export interface GroupSummary {
  groupId: string;
  title: string;
  lastMessage: MessageRow | null;
  activeAt: Date;
}

/** Most member states one dialogs.group.members.changed event carries. */
export const MEMBERS_PER_EVENT = 1_000;

/** A member's state as the members-changed event carries it. */
interface MemberRow {
  user_id: string;
  member: boolean;
  joined_seq: number;
  read_seq: number;
  muted: boolean;
  version: number;
}

const MEMBER_COLUMNS = "user_id, member, joined_seq::float8 as joined_seq, " +
  "read_seq::float8 as read_seq, muted, version::float8 as version";

/** The ids once each, lower-cased as Postgres prints uuids. */
export function uniqueIds(ids: readonly string[]): string[] {
  return [...new Set(ids.map((id) => id.toLowerCase()))];
}

/** The members-changed events of `rows`, at most MEMBERS_PER_EVENT members each. */
export function memberEvents(groupId: string, rows: MemberRow[], requestId?: string): Envelope[] {
  const events: Envelope[] = [];
  for (let i = 0; i < rows.length; i += MEMBERS_PER_EVENT) {
    const members = rows.slice(i, i + MEMBERS_PER_EVENT).map((r) => ({
      userId: r.user_id,
      member: r.member,
      joinedSeq: r.joined_seq,
      readSeq: r.read_seq,
      muted: r.muted,
      version: r.version,
    }));
    events.push(createEvent("dialogs.group.members.changed", { groupId, members }, { requestId }));
  }
  return events;
}

/** Queues the members-changed events of `rows` with the commit. */
function emitMembers(
  tx: Tx,
  withCommit: (s: PromiseLike<unknown>) => void,
  groupId: string,
  rows: MemberRow[],
  requestId?: string,
): void {
  if (rows.length > 0) withCommit(enqueueEvents(tx, memberEvents(groupId, rows, requestId)));
}

/** Creates a group with its owner and members (founding members join at seq 0). */
export async function createGroup(sql: Sql, input: CreateGroupInput): Promise<GroupRow> {
  const members = uniqueIds([input.ownerId, ...input.members]);
  return await outboxTransaction(sql, async (tx, withCommit) => {
    const id = crypto.randomUUID();
    const [[group], rows] = await Promise.all([
      tx<{ created_at: Date }[]>`
        insert into groups (id, title, owner_id) values (${id}, ${input.title}, ${input.ownerId})
        returning created_at`,
      tx<MemberRow[]>`
        insert into group_members (group_id, user_id)
        select ${id}, u from unnest(${members}::uuid[]) as u
        returning ${tx.unsafe(MEMBER_COLUMNS)}`,
    ]);
    emitMembers(tx, withCommit, id, rows, input.requestId);
    return {
      id,
      title: input.title,
      owner_id: input.ownerId.toLowerCase(),
      created_at: group!.created_at,
      member_count: rows.length,
    };
  });
}

/** The group with `userId`'s place in it, or undefined when `userId` is not a member. */
export async function findGroup(
  sql: Sql,
  groupId: string,
  userId: string,
): Promise<GroupWithMe | undefined> {
  const [row] = await sql<
    (GroupRow & { joined_seq: number; read_seq: number; muted: boolean })[]
  >`
    select g.id, g.title, g.owner_id, g.created_at,
           (select count(*)::int from group_members c where c.group_id = g.id and c.member)
             as member_count,
           m.joined_seq::float8 as joined_seq, m.read_seq::float8 as read_seq, m.muted
    from groups g join group_members m on m.group_id = g.id and m.user_id = ${userId} and m.member
    where g.id = ${groupId}`;
  if (!row) return undefined;
  const { joined_seq, read_seq, muted, ...group } = row;
  return { ...group, me: { joinedSeq: joined_seq, readSeq: read_seq, muted } };
}

/**
 * Adds users to the group (re-adding those who left). Each joins at the group's
 * last_committed_seq, read under the group's row lock, so messages committed before never count
 * for them. Those already members count nothing.
 */
export async function addMembers(sql: Sql, input: AddMembersInput): Promise<AddMembersResult> {
  const { groupId, actorId } = input;
  const ids = uniqueIds(input.userIds);
  return await outboxTransaction(sql, async (tx, withCommit): Promise<AddMembersResult> => {
    const [[group], [counts]] = await Promise.all([
      tx<{ seq: number; actor_member: boolean }[]>`
        select last_committed_seq::float8 as seq,
               exists(select 1 from group_members
                      where group_id = ${groupId} and user_id = ${actorId} and member)
                 as actor_member
        from groups where id = ${groupId} for update`,
      tx<{ members: number; already: number }[]>`
        select count(*)::int as members,
               count(*) filter (where user_id = any(${ids}::uuid[]))::int as already
        from group_members where group_id = ${groupId} and member`,
    ]);
    if (!group?.actor_member) return { kind: "not_found" };
    const memberCount = counts!.members + ids.length - counts!.already;
    if (memberCount > input.maxMembers) return { kind: "too_many", memberCount };
    const rows = await tx<MemberRow[]>`
      insert into group_members (group_id, user_id, joined_seq)
      select ${groupId}, u, ${group.seq} from unnest(${ids}::uuid[]) as u
      on conflict (group_id, user_id) do update
        set member = true, joined_seq = excluded.joined_seq, version = group_members.version + 1
        where not group_members.member
      returning ${tx.unsafe(MEMBER_COLUMNS)}`;
    emitMembers(tx, withCommit, groupId, rows, input.requestId);
    return { kind: "added", added: rows.length };
  });
}

/** A member leaves (its own id), or the owner removes one; the row stays with member = false. */
export async function removeMember(
  sql: Sql,
  input: RemoveMemberInput,
): Promise<RemoveMemberResult> {
  const { groupId, actorId, userId } = input;
  return await outboxTransaction(sql, async (tx, withCommit): Promise<RemoveMemberResult> => {
    const [group] = await tx<{ owner_id: string; actor_member: boolean }[]>`
      select owner_id,
             exists(select 1 from group_members
                    where group_id = ${groupId} and user_id = ${actorId} and member) as actor_member
      from groups where id = ${groupId} for update`;
    if (!group?.actor_member) return "not_found";
    if (actorId !== userId && group.owner_id !== actorId) return "forbidden";
    const rows = await tx<MemberRow[]>`
      update group_members set member = false, version = version + 1
      where group_id = ${groupId} and user_id = ${userId} and member
      returning ${tx.unsafe(MEMBER_COLUMNS)}`;
    if (rows.length === 0) return "not_found";
    emitMembers(tx, withCommit, groupId, rows, input.requestId);
    return "removed";
  });
}

/**
 * Stores a group message as pending with its "group message sent" event, in one transaction. The
 * sender and every named mention must be current members; the event's mentions leave out the
 * sender and are empty when the message mentions `all`. A used Idempotency-Key returns its message.
 */
export async function sendGroupMessage(sql: Sql, input: GroupSendInput): Promise<GroupSendResult> {
  const { senderId, groupId, idempotencyKey } = input;
  const { named, all } = normalizeMentions(senderId, input.mentions);
  const byKey = (tx: Tx) =>
    tx<MessageRow[]>`
      select ${tx.unsafe(MESSAGE_COLUMNS)} from messages
      where sender_id = ${senderId} and idempotency_key = ${idempotencyKey ?? null}`;
  return await outboxTransaction(sql, async (tx, withCommit): Promise<GroupSendResult> => {
    const [[existing], members] = await Promise.all([
      idempotencyKey === undefined ? Promise.resolve([]) : byKey(tx),
      tx<{ user_id: string }[]>`
        select user_id from group_members
        where group_id = ${groupId} and member and user_id = any(${[senderId, ...named]}::uuid[])`,
    ]);
    if (existing) return { kind: "sent", message: existing, created: false };
    const found = new Set(members.map((m) => m.user_id));
    if (!found.has(senderId)) return { kind: "not_found" };
    const missing = named.filter((id) => !found.has(id));
    if (missing.length > 0) return { kind: "not_members", userIds: missing };
    const id = crypto.randomUUID();
    const transactionId = crypto.randomUUID();
    const [created] = await tx<MessageRow[]>`
      insert into messages (id, transaction_id, sender_id, group_id, text, mentions, mentions_all,
                            idempotency_key, request_id)
      values (${id}, ${transactionId}, ${senderId}, ${groupId}, ${input.text}, ${named}::uuid[],
              ${all}, ${idempotencyKey ?? null}, ${input.requestId ?? null})
      on conflict (sender_id, idempotency_key) where idempotency_key is not null do nothing
      returning ${tx.unsafe(MESSAGE_COLUMNS)}`;
    if (!created) return { kind: "sent", message: (await byKey(tx))[0]!, created: false };
    withCommit(enqueueEvent(
      tx,
      createEvent("dialogs.group.message.sent", {
        transactionId,
        messageId: id,
        groupId,
        senderId,
        mentions: all ? [] : named,
        mentionsAll: all,
        sentAt: created.created_at.toISOString(),
      }, { requestId: input.requestId }),
    ));
    return { kind: "sent", message: created, created: true };
  });
}

/**
 * The group's messages as `userId` (a member) may see them, newest first: every committed one
 * (also from before it joined) and its own pending and failed ones; deleted ones for no one.
 */
export async function listGroup(
  sql: Sql,
  userId: string,
  groupId: string,
  page: { limit: number; before?: MessageRow },
): Promise<MessageRow[]> {
  const before = page.before;
  return await sql<MessageRow[]>`
    select ${sql.unsafe(MESSAGE_COLUMNS)} from messages
    where group_id = ${groupId}
      and (status = 'committed' or (sender_id = ${userId} and status in ('pending', 'failed')))
      ${
    before
      ? sql`and (created_at, id) < (select created_at, id from messages where id = ${before.id})`
      : sql``
  }
    order by created_at desc, id desc
    limit ${page.limit}`;
}

/**
 * Moves the reader's position forward to `upTo`'s seq (the group's last_committed_seq without
 * it), never back. `read` counts the committed, not deleted messages by others it covered that
 * were past both the reader's joinedSeq and its old readSeq. Undefined: the reader is no member.
 */
export async function markGroupRead(
  sql: Sql,
  input: GroupReadInput,
): Promise<GroupReadResult | undefined> {
  const { readerId, groupId, upTo } = input;
  return await outboxTransaction(sql, async (tx, withCommit) => {
    const [me] = await tx<{ joined_seq: number; read_seq: number; last: number }[]>`
      select m.joined_seq::float8 as joined_seq, m.read_seq::float8 as read_seq,
             g.last_committed_seq::float8 as last
      from group_members m join groups g on g.id = m.group_id
      where m.group_id = ${groupId} and m.user_id = ${readerId} and m.member
      for update of m`;
    if (!me) return undefined;
    const target = upTo ? upTo.seq ?? 0 : me.last;
    if (target <= me.read_seq) return { read: 0, readSeq: me.read_seq };
    const from = Math.max(me.joined_seq, me.read_seq);
    const [[counted], rows] = await Promise.all([
      tx<{ n: number }[]>`
        select count(*)::int as n from messages
        where group_id = ${groupId} and seq > ${from} and seq <= ${target}
          and status = 'committed' and sender_id <> ${readerId}`,
      tx<MemberRow[]>`
        update group_members set read_seq = ${target}, version = version + 1
        where group_id = ${groupId} and user_id = ${readerId}
        returning ${tx.unsafe(MEMBER_COLUMNS)}`,
    ]);
    emitMembers(tx, withCommit, groupId, rows, input.requestId);
    return { read: counted!.n, readSeq: target };
  });
}

/** Mutes or unmutes a group for a member (version + 1, one members-changed event); false: no member. */
export async function muteGroup(sql: Sql, input: MuteInput): Promise<boolean> {
  return await outboxTransaction(sql, async (tx, withCommit) => {
    const rows = await tx<MemberRow[]>`
      update group_members set muted = ${input.muted}, version = version + 1
      where group_id = ${input.targetId} and user_id = ${input.userId} and member
      returning ${tx.unsafe(MEMBER_COLUMNS)}`;
    emitMembers(tx, withCommit, input.targetId, rows, input.requestId);
    return rows.length > 0;
  });
}

/** Mutes or unmutes the dialog with a peer (version + 1) and writes dialogs.dialog.muted. */
export async function muteDialog(sql: Sql, input: MuteInput): Promise<number> {
  return await outboxTransaction(sql, async (tx, withCommit) => {
    const [row] = await tx<{ version: number }[]>`
      insert into dialog_mutes (user_id, peer_id, muted, version)
      values (${input.userId}, ${input.targetId}, ${input.muted}, 1)
      on conflict (user_id, peer_id) do update
        set muted = excluded.muted, version = dialog_mutes.version + 1
      returning version::float8 as version`;
    withCommit(enqueueEvent(
      tx,
      createEvent("dialogs.dialog.muted", {
        userId: input.userId,
        peerId: input.targetId,
        muted: input.muted,
        version: row!.version,
      }, { requestId: input.requestId }),
    ));
    return row!.version;
  });
}

/**
 * The caller's groups with the last message each shows it (as listGroup), most recent activity
 * first; a group without one is as recent as its creation.
 */
export async function listGroupSummaries(
  sql: Sql,
  userId: string,
  limit: number,
): Promise<GroupSummary[]> {
  const rows = await sql<
    (MessageRow & { gid: string; title: string; group_created_at: Date; active_at: Date })[]
  >`
    select g.id as gid, g.title, g.created_at as group_created_at,
           coalesce(l.created_at, g.created_at) as active_at, l.*
    from group_members gm
    join groups g on g.id = gm.group_id
    left join lateral (
      select ${sql.unsafe(MESSAGE_COLUMNS)} from messages m
      where m.group_id = g.id
        and (m.status = 'committed' or (m.sender_id = ${userId} and m.status in ('pending', 'failed')))
      order by m.created_at desc, m.id desc
      limit 1
    ) l on true
    where gm.user_id = ${userId} and gm.member
    order by active_at desc, g.id desc
    limit ${limit}`;
  return rows.map(({ gid, title, group_created_at: _, active_at, ...message }) => ({
    groupId: gid,
    title,
    lastMessage: message.id ? message : null,
    activeAt: active_at,
  }));
}
