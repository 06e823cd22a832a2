/** Messages as the API shows them, who may see them, and the answer to a send. Pure. */
import { AppError } from "../shared/errors.ts";
import type {
  AnyMessageView,
  GroupMessageView,
  MessageStatus,
  MessageView,
  SendAccepted,
} from "./schemas.ts";

export type { AnyMessageView, GroupMessageView, MessageStatus, MessageView };

/** A stored message: of a dialog (`recipient_id`) or of a group (`group_id`, `seq` once counted). */
export interface MessageRow {
  id: string;
  transaction_id: string;
  sender_id: string;
  recipient_id: string | null;
  group_id: string | null;
  text: string;
  status: MessageStatus;
  seq: number | null;
  mentions: string[];
  mentions_all: boolean;
  created_at: Date;
  read_at: Date | null;
}

/** The API view of a stored dialog message. */
export function toMessageView(row: MessageRow): MessageView {
  return {
    id: row.id,
    from: row.sender_id,
    to: row.recipient_id!,
    text: row.text,
    status: row.status,
    createdAt: row.created_at.toISOString(),
    readAt: row.read_at ? row.read_at.toISOString() : null,
  };
}

/** The API view of a stored group message; `all` leads its mentions when it mentions everyone. */
export function toGroupMessageView(row: MessageRow): GroupMessageView {
  return {
    id: row.id,
    from: row.sender_id,
    groupId: row.group_id!,
    text: row.text,
    status: row.status,
    seq: row.seq,
    mentions: [...(row.mentions_all ? ["all" as const] : []), ...row.mentions],
    createdAt: row.created_at.toISOString(),
  };
}

/** The view of a dialog or a group message. */
export function toAnyMessageView(row: MessageRow): AnyMessageView {
  return row.group_id ? toGroupMessageView(row) : toMessageView(row);
}

/**
 * Who may see a message by id: its sender always (deleted too); a dialog's recipient once it is
 * committed; a group's current members (`isMember`) once it is committed.
 */
export function canSee(row: MessageRow, userId: string, isMember = false): boolean {
  if (row.sender_id === userId) return true;
  if (row.status !== "committed") return false;
  return row.group_id ? isMember : row.recipient_id === userId;
}

/**
 * The mentions a group send stores: named members other than the sender, each once, and whether
 * it mentions `all`.
 */
export function normalizeMentions(
  senderId: string,
  mentions: readonly string[],
): { named: string[]; all: boolean } {
  const all = mentions.some((m) => m === "all");
  const named = new Set(
    mentions.filter((m) => m !== "all").map((m) => m.toLowerCase()).filter((m) => m !== senderId),
  );
  return { named: [...named], all };
}

/** The columns a MessageRow is selected with (seq as a number: float8 is exact up to 2^53). */
export const MESSAGE_COLUMNS = "id, transaction_id, sender_id, recipient_id, group_id, text, " +
  "status, seq::float8 as seq, mentions, mentions_all, created_at, read_at";

/**
 * The answer to a send (202): the message, its saga's transaction and its status. A replay of an
 * Idempotency-Key that named another message (`sameRequest` false) is refused with 422.
 */
export function sendAnswer(
  message: { id: string; transaction_id: string; status: MessageStatus },
  sameRequest: boolean,
): SendAccepted {
  if (!sameRequest) {
    throw new AppError(
      422,
      "idempotency-key-reused",
      "this Idempotency-Key was used for a different message",
    );
  }
  return { messageId: message.id, transactionId: message.transaction_id, status: message.status };
}
