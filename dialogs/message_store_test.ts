import assert from "node:assert/strict";
import type { Sql } from "../shared/db.ts";
import type { EventData } from "../shared/events.ts";
import { applyCountedReplies, sendMessage } from "./message_store.ts";
import { integrationTest, migratedDatabase, type TestEnv } from "../testing/env.ts";

async function withDialogs(env: TestEnv, fn: (sql: Sql) => Promise<void>): Promise<void> {
  const sql = await migratedDatabase(env.dialogsDatabaseUrl, "dialogs");
  try {
    await fn(sql);
  } finally {
    await sql.end();
  }
}

async function pendingSend(sql: Sql) {
  const { message } = await sendMessage(sql, {
    senderId: crypto.randomUUID(),
    recipientId: crypto.randomUUID(),
    text: "hi",
  });
  return message;
}

const reply = (
  transactionId: string,
  outcome: "counted" | "failed",
  reason?: string,
): EventData<"counters.message.counted"> => ({
  transactionId,
  messageId: crypto.randomUUID(),
  outcome,
  ...(reason ? { reason } : {}),
});

integrationTest(
  "applyCountedReplies() finishes each pending message of a batch, once, and knows no stranger",
  async (env) => {
    await withDialogs(env, async (sql) => {
      const [a, b] = [await pendingSend(sql), await pendingSend(sql)];
      const results = await applyCountedReplies(sql, [
        reply(a.transaction_id, "counted"),
        reply(b.transaction_id, "failed", "refused"),
        reply(a.transaction_id, "failed"),
        reply(crypto.randomUUID(), "counted"),
      ]);
      assert.deepEqual(results.map((r) => r.kind === "unknown" ? r.kind : [r.kind, r.status]), [
        ["applied", "committed"],
        ["applied", "failed"],
        ["ignored", "committed"],
        "unknown",
      ]);
      const rows = await sql<{ id: string; status: string; failure_reason: string | null }[]>`
        select id, status, failure_reason from messages where finished_at is not null order by status`;
      assert.deepEqual(rows.map((r) => [r.id, r.status, r.failure_reason]), [
        [a.id, "committed", null],
        [b.id, "failed", "refused"],
      ]);
    });
  },
);

integrationTest(
  "applyCountedReplies() leaves a finished message as it is when a late reply arrives",
  async (env) => {
    await withDialogs(env, async (sql) => {
      const m = await pendingSend(sql);
      await applyCountedReplies(sql, [reply(m.transaction_id, "failed", "timed out")]);
      const [late] = await applyCountedReplies(sql, [reply(m.transaction_id, "counted")]);
      assert.deepEqual(late, { kind: "ignored", status: "failed", messageId: m.id });
      const [row] = await sql`select status from messages where id = ${m.id}`;
      assert.equal(row!.status, "failed");
    });
  },
);
