import assert from "node:assert/strict";
import { decide, type MessageCommand, type MessageDecision, TIMEOUT_REASON } from "./saga.ts";
import type { MessageStatus } from "./messages.ts";
import { assertDocumented, stateDiagram } from "../testing/state_diagram.ts";

const TIMEOUT_MS = 8_000;

/** Every command as the saga tells it apart, with the message's age it is given at. */
const events = {
  "reply counted": {
    ageMs: TIMEOUT_MS,
    command: { type: "reply", outcome: "counted", timeoutMs: TIMEOUT_MS },
  },
  "reply counted late": {
    ageMs: TIMEOUT_MS + 0.001,
    command: { type: "reply", outcome: "counted", timeoutMs: TIMEOUT_MS },
  },
  // Late or not: counters counted nothing, so there is nothing to take back.
  "reply failed": {
    ageMs: 60_000,
    command: { type: "reply", outcome: "failed", reason: "refused", timeoutMs: TIMEOUT_MS },
  },
  "timeout due": { ageMs: TIMEOUT_MS + 0.001, command: { type: "timeout", timeoutMs: TIMEOUT_MS } },
  "timeout not due": { ageMs: TIMEOUT_MS, command: { type: "timeout", timeoutMs: TIMEOUT_MS } },
} satisfies Record<string, { ageMs: number; command: MessageCommand }>;

type Event = keyof typeof events;

const commit = { status: "committed", reason: null, cancel: false } as const;
const timedOut = { status: "failed", reason: TIMEOUT_REASON, cancel: true } as const;
const finished = { ignored: "finished" } as const;

/** The saga's state machine on dialogs' side: every status with every event. */
const table: [MessageStatus, Event, MessageDecision][] = [
  ["pending", "reply counted", commit],
  ["pending", "reply counted late", timedOut],
  ["pending", "reply failed", { status: "failed", reason: "refused", cancel: false }],
  ["pending", "timeout due", timedOut],
  ["pending", "timeout not due", { ignored: "not due" }],
  ["committed", "reply counted", finished],
  ["committed", "reply counted late", finished],
  ["committed", "reply failed", finished],
  ["committed", "timeout due", finished],
  ["committed", "timeout not due", finished],
  ["failed", "reply counted", finished],
  ["failed", "reply counted late", finished],
  ["failed", "reply failed", finished],
  ["failed", "timeout due", finished],
  ["failed", "timeout not due", finished],
];

Deno.test("decide() takes every status and command as the saga's table says", () => {
  for (const [status, event, expected] of table) {
    const { ageMs, command } = events[event];
    assert.deepEqual(decide({ status, ageMs }, command), expected, `${status} + ${event}`);
  }
});

Deno.test("the saga's table names every status with every command once", () => {
  const statuses: MessageStatus[] = ["pending", "committed", "failed"];
  const pairs = table.map(([status, event]) => `${status} + ${event}`);
  assert.deepEqual(
    pairs.toSorted(),
    statuses.flatMap((s) => Object.keys(events).map((e) => `${s} + ${e}`)).toSorted(),
  );
});

Deno.test("decide() calls a message late only when it is older than the timeout, strictly", () => {
  const reply: MessageCommand = { type: "reply", outcome: "counted", timeoutMs: TIMEOUT_MS };
  const timeout: MessageCommand = { type: "timeout", timeoutMs: TIMEOUT_MS };
  const cases: [number, MessageDecision, MessageDecision][] = [
    [0, commit, { ignored: "not due" }],
    [7_999, commit, { ignored: "not due" }],
    [8_000, commit, { ignored: "not due" }],
    [8_000.001, timedOut, timedOut],
    [8_001, timedOut, timedOut],
    [60_000, timedOut, timedOut],
  ];
  for (const [ageMs, onReply, onTimeout] of cases) {
    assert.deepEqual(decide({ status: "pending", ageMs }, reply), onReply, `reply at ${ageMs} ms`);
    assert.deepEqual(decide({ status: "pending", ageMs }, timeout), onTimeout, `timeout ${ageMs}`);
  }
});

Deno.test("decide() keeps counters' reason for a refusal and has none without one", () => {
  const refused = (reason?: string): MessageCommand => ({
    type: "reply",
    outcome: "failed",
    ...(reason ? { reason } : {}),
    timeoutMs: TIMEOUT_MS,
  });
  assert.deepEqual(decide({ status: "pending", ageMs: 10 }, refused("constraint unread_max")), {
    status: "failed",
    reason: "constraint unread_max",
    cancel: false,
  });
  assert.deepEqual(decide({ status: "pending", ageMs: 10 }, refused()), {
    status: "failed",
    reason: null,
    cancel: false,
  });
});

/** The table as docs/architecture.md draws it. */
function dialogsSagaDiagram(): string {
  return stateDiagram(
    table.map(([from, on, decision]) =>
      "ignored" in decision ? { from, on, ignored: decision.ignored } : {
        from,
        on,
        to: decision.status,
        effect: decision.cancel ? "cancel the count" : undefined,
      }
    ),
    { to: "pending", on: "POST send" },
  );
}

Deno.test("docs/architecture.md draws dialogs' side of the saga from this table", async () => {
  await assertDocumented(dialogsSagaDiagram());
});
