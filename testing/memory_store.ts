/** An in-memory MessageStore for route tests, held to the Postgres store's behaviour by one contract test. */
import type {
  DialogPage,
  DialogSummary,
  MessageStore,
  ReadInput,
  ReadResult,
  SendInput,
  SendResult,
} from "../dialogs/message_store.ts";
import type { MessageRow, MessageStatus } from "../dialogs/messages.ts";

/** A MessageStore in memory, with what a test needs to move a saga along and look inside. */
export interface MemoryMessageStore extends MessageStore {
  /** Every stored message, oldest first. */
  readonly messages: readonly MessageRow[];
  /** Finishes a message's saga, as counters' reply would. */
  setStatus(id: string, status: MessageStatus): void;
}

/** (created_at, id) descending, the order of every list. */
const newestFirst = (a: MessageRow, b: MessageRow) =>
  b.created_at.getTime() - a.created_at.getTime() || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0);

/** An empty in-memory MessageStore. Ids are compared lower-cased, as Postgres compares uuids. */
export function memoryMessageStore(): MemoryMessageStore {
  const messages: MessageRow[] = [];
  const keys = new Map<string, MessageRow>();
  let lastTime = 0;
  // Strictly increasing, so two messages never share a created_at (Postgres has microseconds).
  const now = () => new Date(lastTime = Math.max(Date.now(), lastTime + 1));
  const find = (id: string) => messages.find((m) => m.id === id.toLowerCase());
  const visibleTo = (userId: string) => (m: MessageRow) =>
    m.sender_id === userId || (m.recipient_id === userId && m.status === "committed");

  return {
    messages,
    setStatus(id, status) {
      const row = find(id);
      if (!row) throw new Error(`no message ${id}`);
      row.status = status;
    },
    sendMessage(input: SendInput): Promise<SendResult> {
      const senderId = input.senderId.toLowerCase();
      const key = input.idempotencyKey === undefined
        ? undefined
        : `${senderId} ${input.idempotencyKey}`;
      const existing = key === undefined ? undefined : keys.get(key);
      if (existing) return Promise.resolve({ message: existing, created: false });
      const message: MessageRow = {
        id: crypto.randomUUID(),
        transaction_id: crypto.randomUUID(),
        sender_id: senderId,
        recipient_id: input.recipientId.toLowerCase(),
        text: input.text,
        status: "pending",
        created_at: now(),
        read_at: null,
      };
      messages.push(message);
      if (key !== undefined) keys.set(key, message);
      return Promise.resolve({ message, created: true });
    },
    findMessage(id: string): Promise<MessageRow | undefined> {
      return Promise.resolve(find(id));
    },
    listDialog(userId: string, peerId: string, page: DialogPage): Promise<MessageRow[]> {
      const [user, peer] = [userId.toLowerCase(), peerId.toLowerCase()];
      const before = page.before;
      return Promise.resolve(
        messages
          .filter((m) =>
            (m.sender_id === user && m.recipient_id === peer) ||
            (m.sender_id === peer && m.recipient_id === user && m.status === "committed")
          )
          .filter((m) => !before || newestFirst(m, before) > 0)
          .sort(newestFirst)
          .slice(0, page.limit),
      );
    },
    listDialogs(userId: string, limit: number): Promise<DialogSummary[]> {
      const user = userId.toLowerCase();
      const latest = new Map<string, MessageRow>();
      for (const m of [...messages].filter(visibleTo(user)).sort(newestFirst)) {
        const peerId = m.sender_id === user ? m.recipient_id : m.sender_id;
        if (!latest.has(peerId)) latest.set(peerId, m);
      }
      return Promise.resolve(
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
      return Promise.resolve(
        read.length === 0 ? { read: 0 } : { read: read.length, transactionId: crypto.randomUUID() },
      );
    },
  };
}
