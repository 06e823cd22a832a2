import assert from "node:assert/strict";
import type { Sql } from "../shared/db.ts";
import { applyMessageCancelled, loadUserCounters } from "./counter_store.ts";
import { applyMessageSent, applyMessagesSent } from "./send_batch.ts";
import { messageSentData } from "../testing/fixtures.ts";
import { integrationTest, withCountersDatabase } from "../testing/env.ts";

const sent = (recipientId = crypto.randomUUID(), senderId = crypto.randomUUID()) => ({
  data: messageSentData({ recipientId, senderId }),
});

async function replies(sql: Sql) {
  return await sql<{ id: string; transaction_id: string; outcome: string }[]>`
    select id, payload->'data'->>'transactionId' as transaction_id,
           payload->'data'->>'outcome' as outcome
    from outbox`;
}

integrationTest(
  "applyMessagesSent() counts every send of a batch and writes one reply each",
  async (env) => {
    await withCountersDatabase(env, async (sql) => {
      const [alice, bob, peer, other] = [1, 2, 3, 4].map(() => crypto.randomUUID());
      const batch = [sent(alice!, peer), sent(alice!, peer), sent(alice!, other), sent(bob!, peer)];
      const results = await applyMessagesSent(sql, batch);
      assert.deepEqual(results.map((r) => [r.applied, r.outcome]), [
        [true, "counted"],
        [true, "counted"],
        [true, "counted"],
        [true, "counted"],
      ]);
      assert.deepEqual((await loadUserCounters(sql, alice!)).dialogs, { [peer!]: 2, [other!]: 1 });
      assert.deepEqual((await loadUserCounters(sql, bob!)).dialogs, { [peer!]: 1 });
      const written = await replies(sql);
      assert.deepEqual(
        written.map((r) => r.transaction_id).sort(),
        batch.map((s) => s.data.transactionId).sort(),
      );
      assert.ok(written.every((r) => r.outcome === "counted"));
    });
  },
);

integrationTest(
  "applyMessagesSent() counts a send already in the ledger, or given twice, once with one reply",
  async (env) => {
    await withCountersDatabase(env, async (sql) => {
      const earlier = sent();
      await applyMessageSent(sql, earlier.data);
      const [firstReply] = await replies(sql);
      const fresh = sent();
      const results = await applyMessagesSent(sql, [earlier, fresh, fresh]);
      assert.deepEqual(results.map((r) => [r.applied, r.outcome]), [
        [false, "counted"],
        [true, "counted"],
        [false, "counted"],
      ]);
      assert.deepEqual((await loadUserCounters(sql, earlier.data.recipientId)).dialogs, {
        [earlier.data.senderId]: 1,
      });
      assert.deepEqual((await loadUserCounters(sql, fresh.data.recipientId)).dialogs, {
        [fresh.data.senderId]: 1,
      });
      const written = await replies(sql);
      assert.equal(written.length, 2, "one reply per transaction, the earlier one re-sent");
      assert.ok(written.some((r) => r.id === firstReply!.id));
    });
  },
);

integrationTest(
  "applyMessagesSent() fails only the send a CHECK constraint refuses, the rest are counted",
  async (env) => {
    await withCountersDatabase(env, async (sql) => {
      await sql`alter table unread_counters add constraint unread_max check (unread <= 1)`;
      const [alice, bob, peer] = [1, 2, 3].map(() => crypto.randomUUID());
      const batch = [sent(alice!, peer), sent(bob!, peer), sent(alice!, peer)];
      const results = await applyMessagesSent(sql, batch);
      assert.deepEqual(results.map((r) => [r.applied, r.outcome]), [
        [true, "counted"],
        [true, "counted"],
        [true, "failed"],
      ]);
      assert.match(results[2]!.reason!, /constraint unread_max/);
      assert.deepEqual((await loadUserCounters(sql, alice!)).dialogs, { [peer!]: 1 });
      assert.deepEqual((await loadUserCounters(sql, bob!)).dialogs, { [peer!]: 1 });
      const outcomes = new Map((await replies(sql)).map((r) => [r.transaction_id, r.outcome]));
      assert.equal(outcomes.get(batch[2]!.data.transactionId), "failed");
    });
  },
);

integrationTest(
  "applyMessagesSent() answers 'failed' for a send cancelled before it arrived, and counts nothing",
  async (env) => {
    await withCountersDatabase(env, async (sql) => {
      const late = sent();
      const { transactionId, messageId, senderId, recipientId } = late.data;
      await applyMessageCancelled(sql, {
        transactionId,
        messageId,
        senderId,
        recipientId,
        reason: "the saga timed out",
      });
      const [result] = await applyMessagesSent(sql, [late, sent()]);
      assert.deepEqual([result!.applied, result!.outcome], [false, "failed"]);
      assert.deepEqual((await loadUserCounters(sql, recipientId)).dialogs, {});
      const [row] =
        await sql`select reply_event_id from ledger where transaction_id = ${transactionId}`;
      const written = await replies(sql);
      assert.ok(written.some((r) => r.id === row!.reply_event_id && r.outcome === "failed"));
    });
  },
);

integrationTest(
  "applyMessagesSent(): concurrent batches sharing users in any order all commit, none twice",
  async (env) => {
    await withCountersDatabase(env, async (sql) => {
      const users = Array.from({ length: 6 }, () => crypto.randomUUID());
      const peer = crypto.randomUUID();
      const batches = Array.from(
        { length: 8 },
        (_, b) => (b % 2 ? [...users].reverse() : users).map((u) => sent(u, peer)),
      );
      const results = await Promise.all(batches.map((b) => applyMessagesSent(sql, b)));
      assert.ok(results.flat().every((r) => r.applied && r.outcome === "counted"));
      for (const u of users) {
        assert.deepEqual((await loadUserCounters(sql, u)).dialogs, { [peer]: 8 });
      }
    });
  },
);
