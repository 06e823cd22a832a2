/** The dialogs side of the send saga as one pure decision: what a command does to a message. */
import type { MessageStatus } from "./messages.ts";

/** Why a send failed when its saga took too long. */
export const TIMEOUT_REASON = "the saga timed out";

/** A message as the saga decides on it: its status, and how long ago it was sent by Postgres' clock. */
export interface SagaMessage {
  status: MessageStatus;
  ageMs: number;
}

/**
 * What can happen to a message: counters' reply, or the sweeper finding it still pending. Each
 * carries the saga timeout in force (SAGA_TIMEOUT_MS). The sender deleting a message joins here.
 */
export type MessageCommand =
  | { type: "reply"; outcome: "counted" | "failed"; reason?: string; timeoutMs: number }
  | { type: "timeout"; timeoutMs: number };

/**
 * What to do with the message: finish it (a failure with its reason, and whether counters must
 * take its count back) or leave it as it is, and why.
 */
export type MessageDecision =
  | { status: "committed" | "failed"; reason: string | null; cancel: boolean }
  | { ignored: "finished" | "not due" };

/**
 * The saga's state machine on dialogs' side. Only a pending message changes, and only once. A count
 * reported after the timeout never commits it: the message fails and its count is cancelled, as
 * when the sweeper fails it. A refusal fails it without a cancel, since counters counted nothing.
 * Each command says which statuses it acts on, so one acting on finished messages can join.
 */
export function decide(message: SagaMessage, command: MessageCommand): MessageDecision {
  switch (command.type) {
    case "reply":
      if (message.status !== "pending") return { ignored: "finished" };
      if (command.outcome === "failed") {
        return { status: "failed", reason: command.reason ?? null, cancel: false };
      }
      return isLate(message, command.timeoutMs)
        ? timedOut()
        : { status: "committed", reason: null, cancel: false };
    case "timeout":
      if (message.status !== "pending") return { ignored: "finished" };
      return isLate(message, command.timeoutMs) ? timedOut() : { ignored: "not due" };
  }
}

/** Late as the sweeper counts it: older than the timeout, strictly. */
function isLate(message: SagaMessage, timeoutMs: number): boolean {
  return message.ageMs > timeoutMs;
}

function timedOut(): MessageDecision {
  return { status: "failed", reason: TIMEOUT_REASON, cancel: true };
}
