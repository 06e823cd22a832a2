import assert from "node:assert/strict";
import { loadUserCounters } from "./counter_store.ts";
import { applyMessageSent } from "./send_batch.ts";
import { findLedgerDrift, reconcileOnce, repairPair } from "./reconcile.ts";
import { messageSentData } from "../testing/fixtures.ts";
import { integrationTest, migratedDatabase } from "../testing/env.ts";

integrationTest(
  "reconcileOnce() sets a corrupted counter back to its ledger sum and touches nothing else",
  async (env) => {
    const sql = await migratedDatabase(env.countersDatabaseUrl, "counters");
    try {
      const u = crypto.randomUUID(), p1 = crypto.randomUUID(), p2 = crypto.randomUUID();
      for (const p of [p1, p1, p2]) {
        await applyMessageSent(sql, messageSentData({ recipientId: u, senderId: p }));
      }
      assert.deepEqual(await findLedgerDrift(sql), []);
      await sql`update unread_counters set unread = 9 where user_id = ${u} and peer_id = ${p1}`;
      const stray = crypto.randomUUID();
      await sql`insert into unread_counters (user_id, peer_id, unread) values (${stray}, ${p1}, 3)`;
      const before = (await loadUserCounters(sql, u)).version;

      const repaired = await reconcileOnce(sql);
      assert.deepEqual(
        repaired.map((r) => [r.userId, r.peerId, r.expected, r.actual]).sort(),
        [[u, p1, 2, 9], [stray, p1, 0, 3]].sort(),
      );
      const after = await loadUserCounters(sql, u);
      assert.deepEqual(after.dialogs, { [p1]: 2, [p2]: 1 });
      assert.ok(after.version > before, "a repair bumps the version so caches and streams update");
      assert.deepEqual(await reconcileOnce(sql), []);
    } finally {
      await sql.end();
    }
  },
);

integrationTest("repairPair() does nothing when the pair is already right", async (env) => {
  const sql = await migratedDatabase(env.countersDatabaseUrl, "counters");
  try {
    const data = messageSentData();
    await applyMessageSent(sql, data);
    assert.equal(await repairPair(sql, data.recipientId, data.senderId), null);
  } finally {
    await sql.end();
  }
});
