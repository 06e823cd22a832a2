import assert from "node:assert/strict";
import type { Sql } from "../shared/db.ts";
import { applyMessageCancelled, loadUserCounters } from "./counter_store.ts";
import { applyMessageSent, applyMessagesSent, countAndReply } from "./send_batch.ts";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { ensureStreams, streamNames } from "../shared/jetstream.ts";
import { messageSentData } from "../testing/fixtures.ts";
import { integrationTest, type TestEnv, withCountersDatabase } from "../testing/env.ts";

const sent = (recipientId = crypto.randomUUID(), senderId = crypto.randomUUID()) => ({
  data: messageSentData({ recipientId, senderId }),
});

/** Rows in counters' outbox: the counting transaction writes none (the replies are published). */
async function outboxRows(sql: Sql): Promise<number> {
  return (await sql<{ n: number }[]>`select count(*)::int as n from outbox`)[0]!.n;
}

/** The reply id the ledger remembers for a transaction. */
async function ledgerReplyId(sql: Sql, transactionId: string): Promise<string> {
  const [row] = await sql<{ id: string }[]>`
    select reply_event_id as id from ledger where transaction_id = ${transactionId}`;
  return row!.id;
}

integrationTest(
  "applyMessagesSent() counts every send of a batch and returns one reply each, writing no outbox row",
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
      assert.deepEqual(
        results.map((r) => r.reply.data.transactionId),
        batch.map((s) => s.data.transactionId),
      );
      assert.ok(results.every((r) => r.reply.data.outcome === "counted"));
      for (const r of results) {
        assert.equal(r.reply.id, await ledgerReplyId(sql, r.reply.data.transactionId));
      }
      assert.deepEqual(
        results.map((r) => r.keys),
        [alice, alice, alice, bob].map((u) => [`user:${u}`]),
      );
      assert.equal(await outboxRows(sql), 0);
    });
  },
);

integrationTest(
  "applyMessagesSent() counts a send already in the ledger, or given twice, once with one reply",
  async (env) => {
    await withCountersDatabase(env, async (sql) => {
      const earlier = sent();
      const firstReply = (await applyMessageSent(sql, earlier.data)).reply;
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
      assert.equal(results[0]!.reply.id, firstReply.id, "the earlier one answered again");
      assert.deepEqual(results[0]!.keys, [`user:${earlier.data.recipientId}`], "refreshed again");
      assert.equal(results[2]!.reply.id, results[1]!.reply.id, "one reply id per transaction");
      assert.equal(results[1]!.reply.id, await ledgerReplyId(sql, fresh.data.transactionId));
      assert.equal(await outboxRows(sql), 0);
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
      assert.equal(results[2]!.reply.data.outcome, "failed");
      assert.equal(results[2]!.reply.data.reason, results[2]!.reason);
      assert.deepEqual(results[2]!.keys, [], "a refused send changed no state");
      assert.equal(
        results[2]!.reply.id,
        await ledgerReplyId(sql, batch[2]!.data.transactionId),
      );
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
      assert.equal(result!.reply.id, await ledgerReplyId(sql, transactionId));
      assert.equal(result!.reply.data.outcome, "failed");
      assert.deepEqual(result!.keys, []);
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

/** A test's stream and a JetStream client on it, with how many messages it holds and the last. */
async function replyStream(env: TestEnv, create = true) {
  const nc = await env.nats();
  const names = streamNames(env.stream, env.prefix);
  if (create) await ensureStreams(nc, names);
  const jsm = await jetstreamManager(nc);
  return {
    js: jetstream(nc),
    create: () => ensureStreams(nc, names),
    messages: async () => (await jsm.streams.info(names.stream)).state.messages,
    message: async (seq: number) => (await jsm.streams.getMessage(names.stream, { seq }))!,
  };
}

integrationTest(
  "countAndReply() refreshes, then publishes the reply once under the ledger's id; a repeat is answered again",
  async (env) => {
    await withCountersDatabase(env, async (sql) => {
      const stream = await replyStream(env);
      const refreshes: { keys: string[]; published: number }[] = [];
      const deps = {
        sql,
        js: stream.js,
        prefix: env.prefix,
        afterChange: async (keys: string[]) => {
          refreshes.push({ keys, published: await stream.messages() });
        },
      };
      const send = { ...sent(), requestId: "req-1" };
      const [result] = await countAndReply(deps, [send]);
      const replyId = await ledgerReplyId(sql, send.data.transactionId);
      assert.equal(result!.reply.id, replyId);
      assert.deepEqual(refreshes, [{ keys: [`user:${send.data.recipientId}`], published: 0 }]);
      assert.equal(await stream.messages(), 1);
      const stored = await stream.message(1);
      assert.equal(stored.subject, `${env.prefix}.counters.message.counted`);
      assert.equal(stored.header.get("Nats-Msg-Id"), replyId);
      assert.equal(stored.header.get("Event-Type"), "counters.message.counted");
      assert.equal(stored.header.get("X-Request-ID"), "req-1");
      const body = stored.json<{ id: string; data: { outcome: string } }>();
      assert.deepEqual([body.id, body.data.outcome], [replyId, "counted"]);
      assert.equal(await outboxRows(sql), 0, "no outbox row");

      // A redelivery: counted once, refreshed again, answered under the same id (deduplicated).
      const [again] = await countAndReply(deps, [send]);
      assert.deepEqual([again!.applied, again!.reply.id], [false, replyId]);
      assert.deepEqual(refreshes[1]!.keys, [`user:${send.data.recipientId}`]);
      assert.deepEqual((await loadUserCounters(sql, send.data.recipientId)).dialogs, {
        [send.data.senderId]: 1,
      });
      assert.equal(await stream.messages(), 1, "JetStream dropped the repeat (same msgID)");
    });
  },
);

integrationTest(
  "countAndReply() throws when the reply cannot be published; a later delivery publishes the same reply",
  async (env) => {
    await withCountersDatabase(env, async (sql) => {
      const stream = await replyStream(env, false);
      const afterChange = () => Promise.resolve();
      const deps = { sql, js: stream.js, prefix: env.prefix, afterChange };
      const send = sent();
      // No stream yet: nothing answers the publish.
      await assert.rejects(countAndReply(deps, [send]));
      assert.deepEqual((await loadUserCounters(sql, send.data.recipientId)).dialogs, {
        [send.data.senderId]: 1,
      }, "the count committed before the publish");
      await stream.create();
      const failing = Object.assign(Object.create(stream.js), {
        publish: () => Promise.reject(new Error("publish refused")),
      });
      await assert.rejects(countAndReply({ ...deps, js: failing }, [send]), /publish refused/);
      assert.equal(await stream.messages(), 0);
      const [result] = await countAndReply(deps, [send]);
      assert.equal(result!.applied, false);
      assert.equal(await stream.messages(), 1);
      assert.equal(
        (await stream.message(1)).json<{ id: string }>().id,
        await ledgerReplyId(sql, send.data.transactionId),
      );
      assert.deepEqual((await loadUserCounters(sql, send.data.recipientId)).dialogs, {
        [send.data.senderId]: 1,
      }, "counted once");
    });
  },
);

integrationTest(
  "countAndReply() publishes nothing when the refresh fails, and replies a refused send 'failed'",
  async (env) => {
    await withCountersDatabase(env, async (sql) => {
      const stream = await replyStream(env);
      const deps = {
        sql,
        js: stream.js,
        prefix: env.prefix,
        afterChange: () => Promise.reject(new Error("redis down")),
      };
      const send = sent();
      await assert.rejects(countAndReply(deps, [send]), /redis down/);
      assert.equal(await stream.messages(), 0, "no reply before the caches count the send");
      await sql`alter table unread_counters add constraint unread_none check (unread < 1) not valid`;
      const refused = sent();
      const refreshed: string[][] = [];
      const [result] = await countAndReply({
        ...deps,
        afterChange: (keys) => {
          refreshed.push(keys);
          return Promise.resolve();
        },
      }, [refused]);
      assert.equal(result!.outcome, "failed");
      assert.deepEqual(refreshed, [], "a refusal changed no state");
      assert.equal(await stream.messages(), 1);
      const body = (await stream.message(1)).json<{ id: string; data: { outcome: string } }>();
      assert.deepEqual(
        [body.id, body.data.outcome],
        [await ledgerReplyId(sql, refused.data.transactionId), "failed"],
      );
    });
  },
);
