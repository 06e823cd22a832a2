import assert from "node:assert/strict";
import type { Sql } from "../shared/db.ts";
import type { EventData } from "../shared/events.ts";
import {
  applyCountedReplies,
  sendMessage,
  sweepTimedOutSends,
  type TimedOutSend,
} from "./message_store.ts";
import { TIMEOUT_REASON } from "./saga.ts";
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

const TIMEOUT_MS = 60_000;

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
      ], TIMEOUT_MS);
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
      await applyCountedReplies(sql, [reply(m.transaction_id, "failed", "timed out")], TIMEOUT_MS);
      const [late] = await applyCountedReplies(
        sql,
        [reply(m.transaction_id, "counted")],
        TIMEOUT_MS,
      );
      assert.deepEqual(late, { kind: "ignored", status: "failed", messageId: m.id });
      const [row] = await sql`select status from messages where id = ${m.id}`;
      assert.equal(row!.status, "failed");
    });
  },
);

/** The cancel events in the outbox, by message id. */
async function cancelsInOutbox(sql: Sql) {
  const rows = await sql<
    { type: string; payload: { data: { messageId: string; reason: string } } }[]
  >`
    select type, payload from outbox where type = 'dialogs.message.cancelled'`;
  return rows.map((r) => r.payload.data);
}

/** Inserts `n` sends pending since `ageMs` ago, in one statement. */
async function pendingBacklog(sql: Sql, n: number, ageMs: number): Promise<void> {
  await sql`
    insert into messages (id, transaction_id, sender_id, recipient_id, text, created_at)
    select gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), 'hi',
           now() - make_interval(secs => ${ageMs / 1000})
    from generate_series(1, ${n})`;
}

integrationTest(
  "applyCountedReplies() fails a message counted after the timeout and writes its cancel at once",
  async (env) => {
    await withDialogs(env, async (sql) => {
      const [late, lateRefused, inTime] = [
        await pendingSend(sql),
        await pendingSend(sql),
        await pendingSend(sql),
      ];
      await sql`update messages set created_at = now() - interval '10 seconds'
                where id in (${late.id}, ${lateRefused.id})`;
      const results = await applyCountedReplies(sql, [
        reply(late.transaction_id, "counted"),
        reply(lateRefused.transaction_id, "failed", "refused"),
        reply(inTime.transaction_id, "counted"),
      ], 5_000);
      assert.deepEqual(
        results.map((r) => r.kind === "applied" ? [r.messageId, r.status, r.timedOut] : r.kind),
        [
          [late.id, "failed", true],
          [lateRefused.id, "failed", false],
          [inTime.id, "committed", false],
        ],
      );
      const rows = await sql<{ id: string; status: string; failure_reason: string | null }[]>`
        select id, status, failure_reason from messages`;
      const byId = new Map(rows.map((r) => [r.id, [r.status, r.failure_reason]]));
      assert.deepEqual(byId.get(late.id), ["failed", TIMEOUT_REASON]);
      assert.deepEqual(byId.get(lateRefused.id), ["failed", "refused"]);
      assert.deepEqual(byId.get(inTime.id), ["committed", null]);
      // Only the count counters reported is taken back; the refusal counted nothing.
      assert.deepEqual(await cancelsInOutbox(sql), [{
        transactionId: late.transaction_id,
        messageId: late.id,
        senderId: late.sender_id,
        recipientId: late.recipient_id,
        reason: TIMEOUT_REASON,
      }]);
      // A repeat of the late reply changes nothing and cancels nothing more.
      const [again] = await applyCountedReplies(
        sql,
        [reply(late.transaction_id, "counted")],
        5_000,
      );
      assert.deepEqual(again, { kind: "ignored", status: "failed", messageId: late.id });
      assert.equal((await cancelsInOutbox(sql)).length, 1);
    });
  },
);

integrationTest(
  "sweepTimedOutSends() clears a backlog of more than one batch in one tick",
  async (env) => {
    await withDialogs(env, async (sql) => {
      await pendingBacklog(sql, 250, 60_000);
      await pendingBacklog(sql, 3, 0);
      const batches: TimedOutSend[][] = [];
      const failed = await sweepTimedOutSends(sql, 30_000, {
        batchSize: 100,
        onBatch: (b) => batches.push(b),
      });
      assert.equal(failed, 250);
      assert.deepEqual(batches.map((b) => b.length), [100, 100, 50]);
      const [counts] = await sql<{ pending: number; failed: number }[]>`
        select count(*) filter (where status = 'pending')::int as pending,
               count(*) filter (where status = 'failed' and failure_reason = ${TIMEOUT_REASON})::int
                 as failed
        from messages`;
      assert.deepEqual(counts, { pending: 3, failed: 250 }, "the recent sends are left pending");
      const cancels = await cancelsInOutbox(sql);
      assert.equal(new Set(cancels.map((c) => c.messageId)).size, 250);
    });
  },
);

integrationTest(
  "sweepTimedOutSends() on several instances at once fails and cancels each send once",
  async (env) => {
    await withDialogs(env, async (sql) => {
      const other = await migratedDatabase(env.dialogsDatabaseUrl, "dialogs");
      try {
        await pendingBacklog(sql, 150, 60_000);
        const seen: string[] = [];
        const onBatch = (b: TimedOutSend[]) => seen.push(...b.map((m) => m.id));
        const counts = await Promise.all([
          sweepTimedOutSends(sql, 30_000, { batchSize: 20, onBatch }),
          sweepTimedOutSends(other, 30_000, { batchSize: 20, onBatch }),
        ]);
        assert.equal(counts[0]! + counts[1]!, 150);
        assert.equal(new Set(seen).size, 150, "no send failed by both");
        const cancels = await cancelsInOutbox(sql);
        assert.equal(cancels.length, 150);
        assert.equal(new Set(cancels.map((c) => c.messageId)).size, 150);
        const [left] = await sql<{ n: number }[]>`
          select count(*)::int as n from messages where status = 'pending'`;
        assert.equal(left!.n, 0);
      } finally {
        await other.end();
      }
    });
  },
);

Deno.test("sweepTimedOutSends() refuses a batch size that is not a positive integer", async () => {
  await assert.rejects(
    sweepTimedOutSends({} as Sql, 1_000, { batchSize: 0 }),
    /batchSize must be a positive integer, got 0/,
  );
});
