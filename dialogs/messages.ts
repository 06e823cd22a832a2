/** Messages as the API shows them, who may see them, and the send saga's state machine. Pure. */
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

/** What counters' reply does to a pending message. */
export interface ReplyDecision {
  status: "committed" | "failed";
  /**
   * The reply reports a count but came after the saga timeout: the message fails, and a cancel
   * takes the count back, as when the sweeper fails it.
   */
  cancel: boolean;
}

/** When a reply is decided: the message's creation, the present, and the saga timeout. */
export interface ReplyTiming {
  createdAt: Date;
  now: Date;
  timeoutMs: number;
}

/**
 * The send saga's only transition: a pending message takes counters' outcome. A reply that reports
 * a count more than `timeoutMs` after the message was created never commits it: the message fails
 * and its count is cancelled, whatever the sweeper's schedule. A finished message never changes
 * again, so a late or repeated reply is ignored (null).
 */
export function decideReply(
  current: MessageStatus,
  outcome: "counted" | "failed",
  timing: ReplyTiming,
): ReplyDecision | null {
  if (current !== "pending") return null;
  if (outcome === "failed") return { status: "failed", cancel: false };
  // Late as the sweeper counts it: older than the timeout, strictly.
  const late = timing.now.getTime() - timing.createdAt.getTime() > timing.timeoutMs;
  return late ? { status: "failed", cancel: true } : { status: "committed", cancel: false };
}
