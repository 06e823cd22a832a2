import assert from "node:assert/strict";
import { canSee, decideReply, type MessageRow, toMessageView } from "./messages.ts";

const row = (status: MessageRow["status"]): MessageRow => ({
  id: "m",
  transaction_id: "t",
  sender_id: "alice",
  recipient_id: "bob",
  text: "hi",
  status,
  created_at: new Date("2026-01-01T00:00:00Z"),
  read_at: null,
});

Deno.test("decideReply() decides every status, outcome and timing as the saga's table says", () => {
  const createdAt = new Date("2026-01-01T00:00:00.000Z");
  const at = (ms: number) => ({
    createdAt,
    now: new Date(createdAt.getTime() + ms),
    timeoutMs: 8_000,
  });
  const cases: [
    MessageRow["status"],
    "counted" | "failed",
    number,
    ReturnType<typeof decideReply>,
  ][] = [
    ["pending", "counted", 0, { status: "committed", cancel: false }],
    ["pending", "counted", 7_999, { status: "committed", cancel: false }],
    // Late as the sweeper counts it: only older than the timeout.
    ["pending", "counted", 8_000, { status: "committed", cancel: false }],
    ["pending", "counted", 8_001, { status: "failed", cancel: true }],
    ["pending", "counted", 60_000, { status: "failed", cancel: true }],
    ["pending", "failed", 10, { status: "failed", cancel: false }],
    // Counters counted nothing, so there is nothing to take back.
    ["pending", "failed", 60_000, { status: "failed", cancel: false }],
    ["committed", "counted", 10, null],
    ["committed", "failed", 10, null],
    ["committed", "counted", 60_000, null],
    ["failed", "counted", 10, null],
    ["failed", "counted", 60_000, null],
    ["failed", "failed", 10, null],
  ];
  for (const [current, outcome, ageMs, expected] of cases) {
    assert.deepEqual(
      decideReply(current, outcome, at(ageMs)),
      expected,
      `${current} + ${outcome} after ${ageMs} ms`,
    );
  }
});

Deno.test("canSee() shows the sender every status and the recipient only committed", () => {
  for (const s of ["pending", "committed", "failed"] as const) assert.ok(canSee(row(s), "alice"));
  assert.ok(canSee(row("committed"), "bob"));
  assert.ok(!canSee(row("pending"), "bob"));
  assert.ok(!canSee(row("failed"), "bob"));
  assert.ok(!canSee(row("committed"), "carol"));
});

Deno.test("toMessageView() renders the contract's fields", () => {
  assert.deepEqual(toMessageView(row("committed")), {
    id: "m",
    from: "alice",
    to: "bob",
    text: "hi",
    status: "committed",
    createdAt: "2026-01-01T00:00:00.000Z",
    readAt: null,
  });
});
