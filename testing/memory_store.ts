/** An in-memory MessageStore for route tests, held to the Postgres store's behaviour by one contract test. */
import {
  type AddMembersInput,
  type AddMembersResult,
  type CreateGroupInput,
  type GroupReadInput,
  type GroupReadResult,
  type GroupRow,
  type GroupSendInput,
  type GroupSendResult,
  type GroupSummary,
  type GroupWithMe,
  type MuteInput,
  type RemoveMemberInput,
  type RemoveMemberResult,
  uniqueIds,
} from "../dialogs/group_store.ts";
import type {
  DeleteInput,
  DeleteResult,
  DialogPage,
  DialogSummary,
  MessageStore,
  ReadInput,
  ReadResult,
  SendInput,
  SendResult,
} from "../dialogs/message_store.ts";
import { type MessageRow, type MessageStatus, normalizeMentions } from "../dialogs/messages.ts";

/** A MessageStore in memory, with what a test needs to move a saga along and look inside. */
export interface MemoryMessageStore extends MessageStore {
  /** Every stored message, oldest first. */
  readonly messages: readonly MessageRow[];
  /**
   * Finishes a message's saga, as counters' reply would; a committed group message gets the next
   * seq of its group.
   */
  setStatus(id: string, status: MessageStatus): void;
}

/** (created_at, id) descending, the order of every list. */
const newestFirst = (a: MessageRow, b: MessageRow) =>
  b.created_at.getTime() - a.created_at.getTime() || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0);

interface MemoryGroup {
  id: string;
  title: string;
  owner_id: string;
  created_at: Date;
  last_committed_seq: number;
  /** The seq the next counted message gets (counters' group_counters.last_seq + 1). */
  next_seq: number;
}

interface MemoryMember {
  member: boolean;
  joined_seq: number;
  read_seq: number;
  muted: boolean;
  version: number;
}

/** An empty in-memory MessageStore. Ids are compared lower-cased, as Postgres compares uuids. */
export function memoryMessageStore(): MemoryMessageStore {
  const messages: MessageRow[] = [];
  const keys = new Map<string, MessageRow>();
  const groups = new Map<string, MemoryGroup>();
  const members = new Map<string, MemoryMember>();
  const dialogMutes = new Map<string, { muted: boolean; version: number }>();
  let lastTime = 0;
  // Strictly increasing, so two messages never share a created_at (Postgres has microseconds).
  const now = () => new Date(lastTime = Math.max(Date.now(), lastTime + 1));
  const find = (id: string) => messages.find((m) => m.id === id.toLowerCase());
  const visibleTo = (userId: string) => (m: MessageRow) =>
    m.recipient_id !== null && ((m.sender_id === userId && m.status !== "deleted") ||
      (m.recipient_id === userId && m.status === "committed"));
  const memberOf = (groupId: string, userId: string) => {
    const m = members.get(`${groupId.toLowerCase()} ${userId.toLowerCase()}`);
    return m?.member ? m : undefined;
  };
  const groupMembers = (groupId: string) =>
    [...members].filter(([k, m]) => k.startsWith(`${groupId} `) && m.member);
  const inGroupFor = (userId: string, groupId: string) => (m: MessageRow) =>
    m.group_id === groupId &&
    (m.status === "committed" || (m.sender_id === userId && m.status !== "deleted"));
  const resolved = <T>(value: T) => Promise.resolve(value);
  const byKey = (senderId: string, key: string | undefined) =>
    key === undefined ? undefined : keys.get(`${senderId} ${key}`);
  const store = (message: MessageRow, key: string | undefined) => {
    messages.push(message);
    if (key !== undefined) keys.set(`${message.sender_id} ${key}`, message);
  };
  const newMessage = (fields: Partial<MessageRow> & { sender_id: string; text: string }) => ({
    id: crypto.randomUUID(),
    transaction_id: crypto.randomUUID(),
    recipient_id: null,
    group_id: null,
    status: "pending" as const,
    seq: null,
    mentions: [],
    mentions_all: false,
    created_at: now(),
    read_at: null,
    ...fields,
  });

  return {
    messages,
    setStatus(id, status) {
      const row = find(id);
      if (!row) throw new Error(`no message ${id}`);
      row.status = status;
      const group = row.group_id ? groups.get(row.group_id) : undefined;
      if (group && status === "committed" && row.seq === null) {
        row.seq = group.next_seq++;
        group.last_committed_seq = Math.max(group.last_committed_seq, row.seq);
      }
    },
    sendMessage(input: SendInput): Promise<SendResult> {
      const senderId = input.senderId.toLowerCase();
      const existing = byKey(senderId, input.idempotencyKey);
      if (existing) return resolved({ message: existing, created: false });
      const message = newMessage({
        sender_id: senderId,
        recipient_id: input.recipientId.toLowerCase(),
        text: input.text,
      });
      store(message, input.idempotencyKey);
      return resolved({ message, created: true });
    },
    findMessage(id: string): Promise<MessageRow | undefined> {
      return resolved(find(id));
    },
    listDialog(userId: string, peerId: string, page: DialogPage): Promise<MessageRow[]> {
      const [user, peer] = [userId.toLowerCase(), peerId.toLowerCase()];
      const before = page.before;
      return resolved(
        messages
          .filter(visibleTo(user))
          .filter((m) => m.sender_id === peer || m.recipient_id === peer)
          .filter((m) => !before || newestFirst(m, before) > 0)
          .sort(newestFirst)
          .slice(0, page.limit),
      );
    },
    listDialogs(userId: string, limit: number): Promise<DialogSummary[]> {
      const user = userId.toLowerCase();
      const latest = new Map<string, MessageRow>();
      for (const m of [...messages].filter(visibleTo(user)).sort(newestFirst)) {
        const peerId = m.sender_id === user ? m.recipient_id! : m.sender_id;
        if (!latest.has(peerId)) latest.set(peerId, m);
      }
      return resolved(
        [...latest].map(([peerId, lastMessage]) => ({ peerId, lastMessage }))
          .sort((a, b) => newestFirst(a.lastMessage, b.lastMessage))
          .slice(0, limit),
      );
    },
    markMessagesRead(input: ReadInput): Promise<ReadResult> {
      const [reader, peer] = [input.readerId.toLowerCase(), input.peerId.toLowerCase()];
      const upTo = input.upTo;
      const readAt = now();
      const read = messages.filter((m) =>
        m.recipient_id === reader && m.sender_id === peer && m.status === "committed" &&
        m.read_at === null && (!upTo || newestFirst(m, upTo) >= 0)
      );
      for (const m of read) m.read_at = readAt;
      return resolved(
        read.length === 0 ? { read: 0 } : { read: read.length, transactionId: crypto.randomUUID() },
      );
    },
    deleteMessage(input: DeleteInput): Promise<DeleteResult> {
      const row = find(input.messageId);
      if (!row || row.sender_id !== input.userId.toLowerCase()) return resolved("not_found");
      if (row.status === "deleted") return resolved("deleted");
      if (row.status !== "committed") return resolved("conflict");
      row.status = "deleted";
      return resolved("deleted");
    },
    createGroup(input: CreateGroupInput): Promise<GroupRow> {
      const group: MemoryGroup = {
        id: crypto.randomUUID(),
        title: input.title,
        owner_id: input.ownerId.toLowerCase(),
        created_at: now(),
        last_committed_seq: 0,
        next_seq: 1,
      };
      groups.set(group.id, group);
      const ids = uniqueIds([input.ownerId, ...input.members]);
      for (const id of ids) {
        members.set(`${group.id} ${id}`, {
          member: true,
          joined_seq: 0,
          read_seq: 0,
          muted: false,
          version: 1,
        });
      }
      const { id, title, owner_id, created_at } = group;
      return resolved({ id, title, owner_id, created_at, member_count: ids.length });
    },
    findGroup(groupId: string, userId: string): Promise<GroupWithMe | undefined> {
      const group = groups.get(groupId.toLowerCase());
      const me = memberOf(groupId, userId);
      if (!group || !me) return resolved(undefined);
      const { id, title, owner_id, created_at } = group;
      return resolved({
        id,
        title,
        owner_id,
        created_at,
        member_count: groupMembers(group.id).length,
        me: { joinedSeq: me.joined_seq, readSeq: me.read_seq, muted: me.muted },
      });
    },
    addMembers(input: AddMembersInput): Promise<AddMembersResult> {
      const group = groups.get(input.groupId.toLowerCase());
      if (!group || !memberOf(group.id, input.actorId)) return resolved({ kind: "not_found" });
      const ids = uniqueIds(input.userIds).filter((id) => !memberOf(group.id, id));
      const memberCount = groupMembers(group.id).length + ids.length;
      if (memberCount > input.maxMembers) return resolved({ kind: "too_many", memberCount });
      for (const id of ids) {
        const key = `${group.id} ${id}`;
        const old = members.get(key);
        members.set(key, {
          member: true,
          joined_seq: group.last_committed_seq,
          read_seq: old?.read_seq ?? 0,
          muted: old?.muted ?? false,
          version: (old?.version ?? 0) + 1,
        });
      }
      return resolved({ kind: "added", added: ids.length });
    },
    removeMember(input: RemoveMemberInput): Promise<RemoveMemberResult> {
      const group = groups.get(input.groupId.toLowerCase());
      const [actor, user] = [input.actorId.toLowerCase(), input.userId.toLowerCase()];
      if (!group || !memberOf(group.id, actor)) return resolved("not_found");
      if (actor !== user && group.owner_id !== actor) return resolved("forbidden");
      const target = memberOf(group.id, user);
      if (!target) return resolved("not_found");
      target.member = false;
      target.version++;
      return resolved("removed");
    },
    sendGroupMessage(input: GroupSendInput): Promise<GroupSendResult> {
      const senderId = input.senderId.toLowerCase();
      const groupId = input.groupId.toLowerCase();
      const existing = byKey(senderId, input.idempotencyKey);
      if (existing) return resolved({ kind: "sent", message: existing, created: false });
      if (!memberOf(groupId, senderId)) return resolved({ kind: "not_found" });
      const { named, all } = normalizeMentions(senderId, input.mentions);
      const missing = named.filter((id) => !memberOf(groupId, id));
      if (missing.length > 0) return resolved({ kind: "not_members", userIds: missing });
      const message = newMessage({
        sender_id: senderId,
        group_id: groupId,
        text: input.text,
        mentions: named,
        mentions_all: all,
      });
      store(message, input.idempotencyKey);
      return resolved({ kind: "sent", message, created: true });
    },
    listGroup(userId: string, groupId: string, page: DialogPage): Promise<MessageRow[]> {
      const before = page.before;
      return resolved(
        messages.filter(inGroupFor(userId.toLowerCase(), groupId.toLowerCase()))
          .filter((m) => !before || newestFirst(m, before) > 0)
          .sort(newestFirst)
          .slice(0, page.limit),
      );
    },
    listGroupSummaries(userId: string, limit: number): Promise<GroupSummary[]> {
      const user = userId.toLowerCase();
      const summaries = [...groups.values()].filter((g) => memberOf(g.id, user)).map((g) => {
        const lastMessage = messages.filter(inGroupFor(user, g.id)).sort(newestFirst)[0] ?? null;
        return {
          groupId: g.id,
          title: g.title,
          lastMessage,
          activeAt: lastMessage?.created_at ?? g.created_at,
        };
      });
      return resolved(
        summaries.sort((a, b) =>
          b.activeAt.getTime() - a.activeAt.getTime() || (a.groupId < b.groupId ? 1 : -1)
        ).slice(0, limit),
      );
    },
    markGroupRead(input: GroupReadInput): Promise<GroupReadResult | undefined> {
      const [reader, groupId] = [input.readerId.toLowerCase(), input.groupId.toLowerCase()];
      const me = memberOf(groupId, reader);
      const group = groups.get(groupId);
      if (!me || !group) return resolved(undefined);
      const target = input.upTo ? input.upTo.seq ?? 0 : group.last_committed_seq;
      if (target <= me.read_seq) return resolved({ read: 0, readSeq: me.read_seq });
      const from = Math.max(me.joined_seq, me.read_seq);
      const read =
        messages.filter((m) =>
          m.group_id === groupId && m.status === "committed" && m.sender_id !== reader &&
          m.seq !== null && m.seq > from && m.seq <= target
        ).length;
      me.read_seq = target;
      me.version++;
      return resolved({ read, readSeq: target });
    },
    muteGroup(input: MuteInput): Promise<boolean> {
      const me = memberOf(input.targetId, input.userId);
      if (!me) return resolved(false);
      me.muted = input.muted;
      me.version++;
      return resolved(true);
    },
    muteDialog(input: MuteInput): Promise<number> {
      const key = `${input.userId.toLowerCase()} ${input.targetId.toLowerCase()}`;
      const version = (dialogMutes.get(key)?.version ?? 0) + 1;
      dialogMutes.set(key, { muted: input.muted, version });
      return resolved(version);
    },
  };
}
