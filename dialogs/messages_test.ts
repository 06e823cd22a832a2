import assert from "node:assert/strict";
import { canSee, type MessageRow, toMessageView } from "./messages.ts";

const row = (status: MessageRow["status"]): MessageRow => ({
  id: "m",
  transaction_id: "t",
  sender_id: "alice",
  recipient_id: "bob",
  group_id: null,
  text: "hi",
  status,
  seq: null,
  mentions: [],
  mentions_all: false,
  created_at: new Date("2026-01-01T00:00:00Z"),
  read_at: null,
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
