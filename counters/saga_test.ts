import assert from "node:assert/strict";
import { decide, type LedgerDecision, type LedgerEntry, type LedgerEvent } from "./saga.ts";
import { assertDocumented, stateDiagram } from "../testing/state_diagram.ts";

const REPLY = "reply-1", NEW_REPLY = "reply-2";

/** An entry in every state the ledger knows, each with the reply id it remembers. */
const entries = {
  none: undefined,
  counted: { outcome: "counted", delta: 1, reason: null, replyId: REPLY },
  failed: { outcome: "failed", delta: 0, reason: "refused", replyId: REPLY },
  cancelled: { outcome: "cancelled", delta: 0, reason: "cancelled: timed out", replyId: REPLY },
  read: { outcome: "read", delta: -2, reason: null, replyId: null },
} satisfies Record<string, LedgerEntry | undefined>;

/** Every event counters tells apart. */
const events = {
  "sent": { type: "sent", replyId: NEW_REPLY },
  "sent but refused": { type: "sent", replyId: NEW_REPLY, refusal: "constraint unread_max" },
  "cancelled": { type: "cancelled", reason: "timed out" },
  "read": { type: "read", count: 3 },
} satisfies Record<string, LedgerEvent>;

type State = keyof typeof entries;
type Event = keyof typeof events;

const again = (entry: LedgerEntry, outcome: "counted" | "failed"): LedgerDecision => ({
  step: "answer again",
  delta: 0,
  reply: { outcome, ...(entry.reason ? { reason: entry.reason } : {}), replyId: REPLY },
});
const nothingToUndo = { step: "nothing to undo", delta: 0 } as const;
const alreadyApplied = { step: "already applied", delta: 0 } as const;
const { counted, failed, cancelled, read } = entries;

/** The saga's state machine on counters' side: every ledger state with every event. */
const table: [State, Event, LedgerDecision][] = [
  ["none", "sent", {
    step: "count",
    entry: { outcome: "counted", delta: 1, reason: null, replyId: NEW_REPLY },
    delta: 1,
    reply: { outcome: "counted", replyId: NEW_REPLY },
  }],
  ["none", "sent but refused", {
    step: "refuse",
    entry: { outcome: "failed", delta: 0, reason: "constraint unread_max", replyId: NEW_REPLY },
    delta: 0,
    reply: { outcome: "failed", reason: "constraint unread_max", replyId: NEW_REPLY },
  }],
  ["none", "cancelled", {
    step: "remember the cancel",
    entry: { outcome: "cancelled", delta: 0, reason: "cancelled: timed out", replyId: null },
    delta: 0,
  }],
  ["none", "read", {
    step: "read",
    entry: { outcome: "read", delta: -3, reason: null, replyId: null },
    delta: -3,
  }],
  ["counted", "sent", again(counted, "counted")],
  // Counted meanwhile by another delivery: the refusal no longer matters.
  ["counted", "sent but refused", again(counted, "counted")],
  ["counted", "cancelled", {
    step: "undo the count",
    entry: { outcome: "cancelled", delta: 0, reason: "cancelled: timed out", replyId: REPLY },
    delta: -1,
  }],
  ["counted", "read", alreadyApplied],
  ["failed", "sent", again(failed, "failed")],
  ["failed", "sent but refused", again(failed, "failed")],
  ["failed", "cancelled", nothingToUndo],
  ["failed", "read", alreadyApplied],
  ["cancelled", "sent", again(cancelled, "failed")],
  ["cancelled", "sent but refused", again(cancelled, "failed")],
  ["cancelled", "cancelled", nothingToUndo],
  ["cancelled", "read", alreadyApplied],
  // Never met (transaction ids are random): a send is answered "failed" when nothing counted it.
  ["read", "sent", {
    step: "answer again",
    entry: { ...read, replyId: NEW_REPLY },
    delta: 0,
    reply: { outcome: "failed", replyId: NEW_REPLY },
  }],
  ["read", "sent but refused", {
    step: "answer again",
    entry: { ...read, replyId: NEW_REPLY },
    delta: 0,
    reply: { outcome: "failed", replyId: NEW_REPLY },
  }],
  ["read", "cancelled", nothingToUndo],
  ["read", "read", alreadyApplied],
];

Deno.test("decide() takes every ledger state and event as the saga's table says", () => {
  for (const [state, event, expected] of table) {
    assert.deepEqual(decide(entries[state], events[event]), expected, `${state} + ${event}`);
  }
});

Deno.test("the saga's table names every ledger state with every event once", () => {
  const pairs = table.map(([state, event]) => `${state} + ${event}`);
  assert.deepEqual(
    pairs.toSorted(),
    Object.keys(entries).flatMap((s) => Object.keys(events).map((e) => `${s} + ${e}`)).toSorted(),
  );
});

Deno.test("decide() remembers a send's reply id after a cancel that came first, once", () => {
  const remembered = decide(undefined, { type: "cancelled", reason: "timed out" }).entry!;
  const first = decide(remembered, { type: "sent", replyId: "a" });
  assert.deepEqual(first.entry, { ...remembered, replyId: "a" });
  const repeat = decide(first.entry, { type: "sent", replyId: "b" });
  assert.equal(repeat.entry, undefined, "the ledger stays as it is");
  assert.deepEqual(repeat.reply, first.reply);
  assert.deepEqual(first.reply, {
    outcome: "failed",
    reason: "cancelled: timed out",
    replyId: "a",
  });
});

/** A decision's effect as the diagram labels it. */
function effect(event: Event, d: LedgerDecision): string {
  const delta = d.delta === 0 ? [] : event === "read" ? ["−count"] : [d.delta > 0 ? "+1" : "−1"];
  const reply = d.reply ? [`reply ${d.reply.outcome}`] : [];
  return [d.step, ...delta, ...reply].join(", ");
}

/** The table as docs/architecture.md draws it; `[*]` is a transaction the ledger has no entry for. */
function countersSagaDiagram(): string {
  const name = (s: State) => s === "none" ? "[*]" : s;
  return stateDiagram(
    table.map(([from, on, d]) =>
      d.entry || d.reply
        ? { from: name(from), on, to: d.entry?.outcome ?? from, effect: effect(on, d) }
        : { from: name(from), on, ignored: d.step }
    ),
  );
}

Deno.test("docs/architecture.md draws counters' side of the saga from this table", async () => {
  await assertDocumented(countersSagaDiagram());
});
