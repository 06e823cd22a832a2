import assert from "node:assert/strict";
import { createEvent, type Envelope, type EventData, type EventType } from "../shared/events.ts";
import { createLogger } from "../shared/log.ts";
import { createMetrics } from "../shared/metrics.ts";
import { createCounterEventHandler } from "./counter_events.ts";
import { loadManyGroupCounters, loadUserCounters } from "./counter_store.ts";
import { integrationTest, jetstream, migratedDatabase } from "../testing/env.ts";
import { jetstreamManager } from "@nats-io/jetstream";
import { ensureStreams, streamNames } from "../shared/jetstream.ts";

const uuid = (): string => crypto.randomUUID();
const now = () => new Date().toISOString();

integrationTest(
  "the handler applies group, delete and mute events and refreshes the cache keys they changed",
  async (env) => {
    const sql = await migratedDatabase(env.countersDatabaseUrl, "counters");
    try {
      const nc = await env.nats();
      const names = streamNames(env.stream, env.prefix);
      await ensureStreams(nc, names);
      const refreshed: string[][] = [];
      const handle = createCounterEventHandler({
        sql,
        applied: createMetrics().counter("applied_test", "events applied"),
        afterChange: (keys) => {
          refreshed.push(keys.toSorted());
          return Promise.resolve();
        },
        js: jetstream(nc),
        prefix: env.prefix,
      });
      const ctx = { log: createLogger("test", "error", () => {}), deliveryCount: 1 };
      const deliver = async <T extends EventType>(type: T, data: EventData<T>) => {
        refreshed.length = 0;
        await handle(createEvent(type, data) as Envelope, ctx);
        return refreshed.flat();
      };
      const [group, alice, bob, peer] = [uuid(), uuid(), uuid(), uuid()];
      const member = (userId: string, version: number, isMember = true) => ({
        userId,
        member: isMember,
        joinedSeq: 0,
        readSeq: 0,
        muted: false,
        version,
      });
      assert.deepEqual(
        await deliver("dialogs.group.members.changed", {
          groupId: group,
          members: [member(alice, 1), member(bob, 1)],
        }),
        [`user:${alice}`, `user:${bob}`].toSorted(),
      );
      const sent = {
        transactionId: uuid(),
        messageId: uuid(),
        groupId: group,
        senderId: alice,
        mentions: [bob],
        mentionsAll: false,
        sentAt: now(),
      };
      // A counted send refreshes its group, sender and named members before its reply goes out.
      assert.deepEqual(
        await deliver("dialogs.group.message.sent", sent),
        [`group:${group}`, `user:${alice}`, `user:${bob}`].toSorted(),
      );
      assert.equal((await loadManyGroupCounters(sql, [group]))[0]!.lastSeq, 1);
      const jsm = await jetstreamManager(nc);
      const reply = (await jsm.streams.getMessage(names.stream, {
        last_by_subj: `${env.prefix}.counters.message.counted`,
      }))!.json<{ data: { transactionId: string; outcome: string; seq: number } }>();
      assert.deepEqual(reply.data, {
        transactionId: sent.transactionId,
        messageId: sent.messageId,
        outcome: "counted",
        seq: 1,
      });
      assert.deepEqual(
        await deliver("dialogs.group.message.deleted", {
          messageId: sent.messageId,
          groupId: group,
          senderId: alice,
          seq: 1,
          deletedAt: now(),
        }),
        [`group:${group}`, `user:${alice}`, `user:${bob}`].toSorted(),
      );
      const late = { ...sent, transactionId: uuid(), messageId: uuid() };
      assert.deepEqual(
        await deliver("dialogs.group.message.cancelled", { ...late, reason: "timed out" }),
        [],
        "a remembered cancel changed no state",
      );
      await deliver("dialogs.message.sent", {
        transactionId: uuid(),
        messageId: uuid(),
        senderId: peer,
        recipientId: bob,
        sentAt: now(),
      });
      assert.deepEqual(
        await deliver("dialogs.message.deleted", {
          transactionId: uuid(),
          messageId: uuid(),
          senderId: peer,
          recipientId: bob,
          deletedAt: now(),
        }),
        [`user:${bob}`],
      );
      assert.deepEqual((await loadUserCounters(sql, bob)).dialogs, {});
      assert.deepEqual(
        await deliver("dialogs.dialog.muted", {
          userId: bob,
          peerId: peer,
          muted: true,
          version: 1,
        }),
        [`user:${bob}`],
      );
      assert.deepEqual((await loadUserCounters(sql, bob)).muted, [peer]);
      await deliver("dialogs.group.members.changed", {
        groupId: group,
        members: [member(bob, 2, false)],
      });
      assert.equal((await loadUserCounters(sql, bob)).groups, undefined);
    } finally {
      await sql.end();
    }
  },
);

integrationTest(
  "a send whose reply cannot be published fails its handling (nak), and its redelivery replies",
  async (env) => {
    const sql = await migratedDatabase(env.countersDatabaseUrl, "counters");
    try {
      const nc = await env.nats();
      const names = streamNames(env.stream, env.prefix);
      await ensureStreams(nc, names);
      const js = jetstream(nc);
      let publishFails = true;
      const flaky = Object.assign(Object.create(js), {
        publish: (...args: Parameters<typeof js.publish>) =>
          publishFails ? Promise.reject(new Error("JetStream unavailable")) : js.publish(...args),
      });
      const refreshed: string[][] = [];
      const handle = createCounterEventHandler({
        sql,
        applied: createMetrics().counter("applied_test", "events applied"),
        afterChange: (keys) => {
          refreshed.push(keys);
          return Promise.resolve();
        },
        js: flaky,
        prefix: env.prefix,
      });
      const ctx = { log: createLogger("test", "error", () => {}), deliveryCount: 1 };
      const [peer, bob] = [uuid(), uuid()];
      const event = createEvent("dialogs.message.sent", {
        transactionId: uuid(),
        messageId: uuid(),
        senderId: peer,
        recipientId: bob,
        sentAt: now(),
      }) as Envelope;
      await assert.rejects(handle(event, ctx), /JetStream unavailable/);
      const jsm = await jetstreamManager(nc);
      assert.equal((await jsm.streams.info(names.stream)).state.messages, 0);
      publishFails = false;
      await handle(event, { ...ctx, deliveryCount: 2 });
      assert.deepEqual(refreshed, [[`user:${bob}`], [`user:${bob}`]], "refreshed on each delivery");
      assert.equal((await jsm.streams.info(names.stream)).state.messages, 1);
      assert.deepEqual((await loadUserCounters(sql, bob)).dialogs, { [peer]: 1 }, "counted once");
    } finally {
      await sql.end();
    }
  },
);
