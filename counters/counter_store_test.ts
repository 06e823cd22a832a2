import assert from "node:assert/strict";
import { applyMessageCancelled, applyMessagesRead, loadUserCounters } from "./counter_store.ts";
import { applyMessageSent } from "./send_batch.ts";
import { messageSentData } from "../testing/fixtures.ts";
import { integrationTest, migratedDatabase } from "../testing/env.ts";

function sent(recipientId = crypto.randomUUID(), senderId = crypto.randomUUID()) {
  return messageSentData({ recipientId, senderId });
}

integrationTest(
  "applyMessageSent() counts a redelivered transaction once and re-sends the same reply",
  async (env) => {
    const sql = await migratedDatabase(env.countersDatabaseUrl, "counters");
    try {
      const data = sent();
      const first = await applyMessageSent(sql, data);
      const second = await applyMessageSent(sql, data);
      assert.deepEqual([first.applied, first.outcome, first.reason], [true, "counted", undefined]);
      assert.deepEqual([second.applied, second.outcome, second.reason], [
        false,
        "counted",
        undefined,
      ]);
      const counters = await loadUserCounters(sql, data.recipientId);
      assert.deepEqual(counters, { version: 1, dialogs: { [data.senderId]: 1 } });
      assert.equal(second.reply.id, first.reply.id, "the second reply reuses the first's event id");
      assert.equal((await sql`select id from outbox`).length, 0, "no reply in the outbox");
    } finally {
      await sql.end();
    }
  },
);

integrationTest(
  "applyMessageSent() counts concurrent deliveries of one transaction once",
  async (env) => {
    const sql = await migratedDatabase(env.countersDatabaseUrl, "counters");
    try {
      const data = sent();
      const results = await Promise.all(
        [1, 2, 3, 4].map(() => applyMessageSent(sql, data)),
      );
      assert.equal(results.filter((r) => r.applied).length, 1);
      assert.equal((await loadUserCounters(sql, data.recipientId)).dialogs[data.senderId], 1);
    } finally {
      await sql.end();
    }
  },
);

integrationTest(
  "applyMessageSent() answers 'failed' and changes nothing when a CHECK constraint refuses",
  async (env) => {
    const sql = await migratedDatabase(env.countersDatabaseUrl, "counters");
    try {
      await sql`alter table unread_counters add constraint unread_max check (unread <= 1)`;
      const recipient = crypto.randomUUID();
      const sender = crypto.randomUUID();
      assert.equal(
        (await applyMessageSent(sql, sent(recipient, sender))).outcome,
        "counted",
      );
      const refused = sent(recipient, sender);
      const result = await applyMessageSent(sql, refused);
      assert.equal(result.outcome, "failed");
      assert.match(result.reason ?? "", /unread_max/);
      assert.deepEqual(await loadUserCounters(sql, recipient), {
        version: 1,
        dialogs: { [sender]: 1 },
      });
      // The refusal is remembered: redelivery gives the same answer without trying again.
      await sql`alter table unread_counters drop constraint unread_max`;
      const again = await applyMessageSent(sql, refused);
      assert.deepEqual([again.applied, again.outcome, again.reason], [
        false,
        "failed",
        result.reason,
      ]);
      assert.equal(again.reply.id, result.reply.id, "answered again under the same reply id");
      assert.deepEqual(again.keys, []);
      assert.equal((await loadUserCounters(sql, recipient)).dialogs[sender], 1);
    } finally {
      await sql.end();
    }
  },
);

integrationTest(
  "applyMessageSent() throws, and records nothing, on an error retrying can fix",
  async (env) => {
    const sql = await migratedDatabase(env.countersDatabaseUrl, "counters");
    try {
      // A lock timeout is transient: it must propagate so the event is redelivered, not answered 'failed'.
      const data = sent();
      await sql.begin(async (locker) => {
        await locker`lock table unread_counters in access exclusive mode`;
        const other = (await import("../shared/db.ts")).openDatabase(env.countersDatabaseUrl, {
          max: 1,
        });
        try {
          await other`set lock_timeout = '100ms'`;
          await assert.rejects(applyMessageSent(other, data), /lock timeout/);
        } finally {
          await other.end();
        }
      });
      const [row] = await sql`select count(*)::int as n from ledger`;
      assert.equal(row!.n, 0);
      assert.equal((await applyMessageSent(sql, data)).outcome, "counted");
    } finally {
      await sql.end();
    }
  },
);

function readData(readerId: string, peerId: string, count: number) {
  return {
    transactionId: crypto.randomUUID(),
    readerId,
    peerId,
    count,
    readAt: new Date().toISOString(),
  };
}

integrationTest(
  "applyMessagesRead() decrements once however often the read is delivered",
  async (env) => {
    const sql = await migratedDatabase(env.countersDatabaseUrl, "counters");
    try {
      const recipient = crypto.randomUUID(), sender = crypto.randomUUID();
      for (let i = 0; i < 3; i++) await applyMessageSent(sql, sent(recipient, sender));
      const read = readData(recipient, sender, 2);
      assert.equal(await applyMessagesRead(sql, read), true);
      assert.equal(await applyMessagesRead(sql, read), false);
      assert.equal((await loadUserCounters(sql, recipient)).dialogs[sender], 1);
    } finally {
      await sql.end();
    }
  },
);

integrationTest("applyMessagesRead() never takes a counter below zero", async (env) => {
  const sql = await migratedDatabase(env.countersDatabaseUrl, "counters");
  try {
    const recipient = crypto.randomUUID(), sender = crypto.randomUUID();
    await applyMessageSent(sql, sent(recipient, sender));
    await applyMessagesRead(sql, readData(recipient, sender, 5));
    const [row] = await sql`select unread from unread_counters where user_id = ${recipient}`;
    assert.equal(row!.unread, 0);
  } finally {
    await sql.end();
  }
});

integrationTest("applyMessageCancelled() undoes a counted send once", async (env) => {
  const sql = await migratedDatabase(env.countersDatabaseUrl, "counters");
  try {
    const data = sent();
    await applyMessageSent(sql, data);
    const cancel = { ...data, reason: "the saga timed out" };
    assert.equal(await applyMessageCancelled(sql, cancel), "undone");
    assert.equal(await applyMessageCancelled(sql, cancel), "nothing");
    assert.deepEqual((await loadUserCounters(sql, data.recipientId)).dialogs, {});
    // A redelivered "sent" after the cancel is not counted again.
    const again = await applyMessageSent(sql, data);
    assert.equal(again.applied, false);
    assert.equal(again.outcome, "failed");
    assert.deepEqual((await loadUserCounters(sql, data.recipientId)).dialogs, {});
  } finally {
    await sql.end();
  }
});

integrationTest(
  "applyMessageCancelled() before the send is remembered: the late send changes nothing",
  async (env) => {
    const sql = await migratedDatabase(env.countersDatabaseUrl, "counters");
    try {
      const data = sent();
      assert.equal(
        await applyMessageCancelled(sql, { ...data, reason: "the saga timed out" }),
        "remembered",
      );
      const late = await applyMessageSent(sql, data);
      assert.deepEqual([late.applied, late.outcome, late.reason], [
        false,
        "failed",
        "cancelled: the saga timed out",
      ]);
      assert.deepEqual(await loadUserCounters(sql, data.recipientId), { version: 0, dialogs: {} });
      assert.equal(late.reply.data.outcome, "failed");
      const again = await applyMessageSent(sql, data);
      assert.equal(again.reply.id, late.reply.id, "a repeat re-sends the same reply id");
    } finally {
      await sql.end();
    }
  },
);

integrationTest("applyMessageCancelled() leaves a refused send as it is", async (env) => {
  const sql = await migratedDatabase(env.countersDatabaseUrl, "counters");
  try {
    await sql`alter table unread_counters add constraint none_allowed check (unread <= 0)`;
    const data = sent();
    assert.equal((await applyMessageSent(sql, data)).outcome, "failed");
    assert.equal(
      await applyMessageCancelled(sql, { ...data, reason: "the saga timed out" }),
      "nothing",
    );
  } finally {
    await sql.end();
  }
});
