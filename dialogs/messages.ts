/** Messages as the API shows them and who may see them. Pure. */
import type { MessageStatus, MessageView } from "./schemas.ts";

export type { MessageStatus, MessageView };

/** A stored message. */
export interface MessageRow {
  id: string;
  transaction_id: string;
  sender_id: string;
  recipient_id: string;
  text: string;
  status: MessageStatus;
  created_at: Date;
  read_at: Date | null;
}

/** The API view of a stored message. */
export function toMessageView(row: MessageRow): MessageView {
  return {
    id: row.id,
    from: row.sender_id,
    to: row.recipient_id,
    text: row.text,
    status: row.status,
    createdAt: row.created_at.toISOString(),
    readAt: row.read_at ? row.read_at.toISOString() : null,
  };
}

/** The sender sees a message in every status; the recipient only once it is committed. */
export function canSee(row: MessageRow, userId: string): boolean {
  return row.sender_id === userId || (row.recipient_id === userId && row.status === "committed");
}
