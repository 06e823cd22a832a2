/** The counters side of the send saga as one pure decision: what an event does to its ledger entry. */

/** A transaction's ledger entry: what it did to its counter, and the reply dialogs was given. */
export interface LedgerEntry {
  outcome: "counted" | "failed" | "cancelled" | "read";
  /** What the entry contributes to its counter now; the counter is the sum over its entries. */
  delta: number;
  reason: string | null;
  /** The reply to the send, so a repeat re-sends the same one; null until there is one. */
  replyId: string | null;
}

/**
 * What dialogs reported for a transaction. A send brings a fresh reply id, used if its entry has
 * none yet, and `refusal` when the database refused to count it.
 */
export type LedgerEvent =
  | { type: "sent"; replyId: string; refusal?: string }
  | { type: "cancelled"; reason: string }
  | { type: "read"; count: number };

/** The answer to a "message sent", under the reply id the ledger remembers. */
export interface CountedReply {
  outcome: "counted" | "failed";
  reason?: string;
  replyId: string;
}

/**
 * What an event does: the step's name, the entry to write (none: the ledger stays as it is), what
 * the counter changes by, and the reply to send dialogs.
 */
export interface LedgerDecision {
  step:
    | "count"
    | "refuse"
    | "answer again"
    | "remember the cancel"
    | "undo the count"
    | "read"
    | "nothing to undo"
    | "already applied";
  entry?: LedgerEntry;
  delta: number;
  reply?: CountedReply;
}

/**
 * The saga's state machine on counters' side. A send is counted once; every repeat of it gets the
 * same answer again. A cancel takes a count back, or is remembered so that a send arriving after it
 * counts nothing and is answered "failed". A read applies once.
 */
export function decide(entry: LedgerEntry | undefined, event: LedgerEvent): LedgerDecision {
  switch (event.type) {
    case "sent": {
      const { replyId, refusal } = event;
      if (!entry) {
        if (refusal === undefined) {
          const counted = { outcome: "counted", delta: 1, reason: null, replyId } as const;
          const reply = { outcome: "counted", replyId } as const;
          return { step: "count", entry: counted, delta: 1, reply };
        }
        const failed = { outcome: "failed", delta: 0, reason: refusal, replyId } as const;
        const reply = { outcome: "failed", reason: refusal, replyId } as const;
        return { step: "refuse", entry: failed, delta: 0, reply };
      }
      // A cancel that came first wrote no reply: this one's id is remembered for the next repeat.
      return {
        step: "answer again",
        ...(entry.replyId ? {} : { entry: { ...entry, replyId } }),
        delta: 0,
        reply: {
          outcome: entry.outcome === "counted" ? "counted" : "failed",
          ...(entry.reason ? { reason: entry.reason } : {}),
          replyId: entry.replyId ?? replyId,
        },
      };
    }
    case "cancelled": {
      const reason = `cancelled: ${event.reason}`;
      if (!entry) {
        const cancelled = { outcome: "cancelled", delta: 0, reason, replyId: null } as const;
        return { step: "remember the cancel", entry: cancelled, delta: 0 };
      }
      if (entry.outcome !== "counted") return { step: "nothing to undo", delta: 0 };
      const undone = { ...entry, outcome: "cancelled", delta: 0, reason } as const;
      return { step: "undo the count", entry: undone, delta: -entry.delta };
    }
    case "read": {
      if (entry) return { step: "already applied", delta: 0 };
      const read = { outcome: "read", delta: -event.count, reason: null, replyId: null } as const;
      return { step: "read", entry: read, delta: -event.count };
    }
  }
}
