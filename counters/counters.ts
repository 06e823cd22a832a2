/**
 * The shape of a user's counters and the pure functions that read it.
 *
 * A user's counters are composed on read from two kinds of state, each cached and versioned on its
 * own: the user's (dialog counts, mutes, and per group the user's positions and the few seqs that
 * are exceptions for them) and each group's (its last seq, and the few seqs that are exceptions
 * for everyone). A group message changes one group state, never every member's.
 */

/** The user's place in one group, and the seqs after it that are exceptions for the user. */
export interface Membership {
  /** The group's seq when the user joined (0 for founding members). */
  joinedSeq: number;
  /** How far the user has read. */
  readSeq: number;
  muted: boolean;
  /** Seqs of the user's own messages, not deleted, after the user's position; ascending. */
  own: number[];
  /** Seqs of messages by others naming the user, not deleted, after the user's position; ascending. */
  mentions: number[];
}

/** A user's state: unread counts per peer, mutes and group memberships, with its version. */
export interface UserCounters {
  version: number;
  dialogs: Record<string, number>;
  /** Peers whose dialog the user muted. */
  muted?: string[];
  /** The groups the user is a member of now. */
  groups?: Record<string, Membership>;
}

/** A group's state: its newest seq, and the seqs that are exceptions for everyone. */
export interface GroupCounters {
  version: number;
  /** The seq of the group's newest counted message. */
  lastSeq: number;
  /** Seqs that count for no one: deleted messages and counted sends that were cancelled; ascending. */
  deleted: number[];
  /** Seqs of messages (not deleted) that mention `all`; ascending. */
  mentionsAll: number[];
}

/** The group states a composition may use, by group id; undefined when not known. */
export type GroupLookup = (groupId: string) => GroupCounters | undefined;

/** A group's counts for one member. */
export interface GroupCount {
  unread: number;
  mentions: number;
}

/** The body of `GET /api/counters`. */
export interface CountersBody {
  total: number;
  dialogs: Record<string, number>;
  groups: Record<string, GroupCount>;
  mentions: number;
  muted: string[];
}

/** How many of the ascending `seqs` are greater than `after`. */
function countAfter(seqs: readonly number[], after: number): number {
  let lo = 0;
  let hi = seqs.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (seqs[mid]! <= after) lo = mid + 1;
    else hi = mid;
  }
  return seqs.length - lo;
}

/** Whether the ascending `seqs` hold `seq`. */
function holds(seqs: readonly number[], seq: number): boolean {
  return countAfter(seqs, seq - 1) - countAfter(seqs, seq) === 1;
}

/**
 * A member's counts from positions: the messages after the member's position (the later of joined
 * and read) less the member's own and the deleted ones; the mentions of the member or of `all`
 * after it, never the member's own. O(the exceptions after the position), never O(messages).
 */
export function groupCount(member: Membership, group: GroupCounters | undefined): GroupCount {
  if (!group) return { unread: 0, mentions: 0 };
  const after = Math.max(member.joinedSeq, member.readSeq);
  if (group.lastSeq <= after) return { unread: 0, mentions: 0 };
  const own = member.own.filter((seq) => seq > after && seq <= group.lastSeq);
  const unread = group.lastSeq - after - own.length - countAfter(group.deleted, after);
  const ownToAll = own.filter((seq) => holds(group.mentionsAll, seq)).length;
  const named = member.mentions.filter((seq) => seq > after && seq <= group.lastSeq).length;
  const mentions = named + countAfter(group.mentionsAll, after) - ownToAll;
  return { unread: Math.max(0, unread), mentions: Math.max(0, mentions) };
}

const NO_GROUPS: GroupLookup = () => undefined;

/**
 * The body of `GET /api/counters`: non-zero counts per peer and per group, the mentions, the muted
 * conversations, and the total of every conversation that is not muted.
 */
export function countersBody(
  counters: UserCounters,
  groups: GroupLookup = NO_GROUPS,
): CountersBody {
  const muted = new Set(counters.muted ?? []);
  const dialogs: Record<string, number> = {};
  let total = 0;
  for (const [peer, n] of Object.entries(counters.dialogs)) {
    if (n <= 0) continue;
    dialogs[peer] = n;
    if (!muted.has(peer)) total += n;
  }
  const byGroup: Record<string, GroupCount> = {};
  let mentions = 0;
  for (const [groupId, member] of Object.entries(counters.groups ?? {})) {
    if (member.muted) muted.add(groupId);
    const count = groupCount(member, groups(groupId));
    if (count.unread === 0 && count.mentions === 0) continue;
    byGroup[groupId] = count;
    mentions += count.mentions;
    if (!member.muted) total += count.unread;
  }
  return { total, dialogs, groups: byGroup, mentions, muted: [...muted] };
}

/**
 * The version of the composed counters: the user's plus each of the user's groups'. Each part only
 * goes up, and leaving a group raises the user's version by more than the group's (counters'
 * store), so the sum only goes up too.
 */
export function composedVersion(counters: UserCounters, groups: GroupLookup = NO_GROUPS): number {
  let version = counters.version;
  for (const groupId of Object.keys(counters.groups ?? {})) {
    version += groups(groupId)?.version ?? 0;
  }
  return version;
}

// A user state is never changed once made (a change makes a new state), and neither is a group
// state, so with the same group states its body is serialised once, however many reads serve it.
const bodies = new WeakMap<UserCounters, { parts: (GroupCounters | undefined)[]; json: string }>();
const groupIds = new WeakMap<UserCounters, string[]>();
const NO_IDS: string[] = [];

/** The ids of the user's groups, listed once per user state. */
export function groupIdsOf(counters: UserCounters): string[] {
  if (counters.groups === undefined) return NO_IDS;
  let ids = groupIds.get(counters);
  if (ids === undefined) groupIds.set(counters, ids = Object.keys(counters.groups));
  return ids;
}

/** countersBody() as JSON, made once per user state and group states. */
export function countersJson(counters: UserCounters, groups: GroupLookup = NO_GROUPS): string {
  const ids = groupIdsOf(counters);
  const held = bodies.get(counters);
  if (held !== undefined && sameParts(held.parts, ids, groups)) return held.json;
  const json = JSON.stringify(countersBody(counters, groups));
  bodies.set(counters, { parts: ids.map(groups), json });
  return json;
}

/** Whether `groups` gives, for each of `ids`, the very state held in `parts`. */
function sameParts(
  parts: (GroupCounters | undefined)[],
  ids: string[],
  groups: GroupLookup,
): boolean {
  if (parts.length !== ids.length) return false;
  for (let i = 0; i < ids.length; i++) if (parts[i] !== groups(ids[i]!)) return false;
  return true;
}

/** The unread count for one peer (0 when there is none). */
export function unreadFor(counters: UserCounters, peerId: string): number {
  return Math.max(0, counters.dialogs[peerId.toLowerCase()] ?? 0);
}
