import assert from "node:assert/strict";
import { createLogger } from "../shared/log.ts";
import { integrationTest } from "../testing/env.ts";
import { type CachedState, groupKey, userKey } from "./cache_keys.ts";
import type { CoherentCounters } from "./coherence.ts";
import type { GroupCounters, Membership, UserCounters } from "./counters.ts";
import { type CountersEvent, followCounters } from "./live_stream.ts";
import { createLiveUpdates, type LiveUpdates } from "./live_updates.ts";

type Reader = Pick<CoherentCounters, "read" | "readGroups" | "subscribe">;

/**
 * A reader over states held in memory (what the caches would serve), whose changes travel through
 * `subscribe` as live updates do; `set` changes a state and tells the listeners of its key.
 */
function memoryReader(live?: LiveUpdates) {
  const states = new Map<string, CachedState>();
  const listeners = new Map<string, Set<(state: CachedState) => void>>();
  const groupReads: string[][] = [];
  const reader: Reader = {
    read(userId) {
      const user = states.get(userKey(userId)) as UserCounters;
      return Promise.resolve({
        user,
        group: (id: string) => states.get(groupKey(id)) as GroupCounters | undefined,
      });
    },
    readGroups(groupIds) {
      groupReads.push(groupIds);
      return Promise.resolve(groupIds.map((id) => states.get(groupKey(id)) as GroupCounters));
    },
    subscribe(key, listener) {
      if (live) return live.subscribe(key, listener);
      let set = listeners.get(key);
      if (!set) listeners.set(key, set = new Set());
      set.add(listener);
      return () => set.delete(listener);
    },
  };
  return {
    reader,
    states,
    groupReads,
    listeners,
    set(key: string, state: CachedState) {
      states.set(key, state);
      for (const listener of listeners.get(key) ?? []) listener(state);
    },
  };
}

const member = (): Membership => ({
  joinedSeq: 0,
  readSeq: 0,
  muted: false,
  own: [],
  mentions: [],
});
const group = (version: number, lastSeq = version): GroupCounters => ({
  version,
  lastSeq,
  deleted: [],
  mentionsAll: [],
});

/** Collects the events a follow sends; `next()` waits for the next one. */
function collector() {
  const events: { version: number; body: Record<string, unknown> }[] = [];
  let wake = () => {};
  return {
    events,
    send(event: CountersEvent) {
      events.push({ version: event.version, body: JSON.parse(event.json) });
      wake();
      return Promise.resolve();
    },
    async count(n: number) {
      while (events.length < n) await new Promise<void>((r) => wake = r);
      await new Promise((r) => setTimeout(r, 10)); // nothing more follows
      return events;
    },
  };
}

Deno.test("followCounters() sends when the composed version goes up, never for an older part, and follows joins and leaves", async () => {
  const me = crypto.randomUUID(), g1 = crypto.randomUUID(), g2 = crypto.randomUUID();
  const m = memoryReader();
  m.states.set(userKey(me), { version: 1, dialogs: {}, groups: { [g1]: member() } });
  m.states.set(groupKey(g1), group(2));
  m.states.set(groupKey(g2), group(5));
  const out = collector();
  const follow = followCounters(m.reader, me, out.send);
  await follow.started;
  assert.deepEqual(out.events.map((e) => e.version), [3]);
  assert.deepEqual(m.groupReads, [[g1]], "the group is read after it is subscribed");

  m.set(groupKey(g1), group(3)); // a group message
  m.set(groupKey(g1), group(2)); // a late, older state: ignored
  await out.count(2);
  m.set(userKey(me), { version: 4, dialogs: {}, groups: { [g1]: member(), [g2]: member() } });
  await out.count(3);
  assert.deepEqual(out.events.map((e) => e.version), [3, 4, 4 + 3 + 5]);
  assert.deepEqual(out.events[2]!.body.groups, {
    [g1]: { unread: 3, mentions: 0 },
    [g2]: { unread: 5, mentions: 0 },
  });
  assert.equal(m.listeners.get(groupKey(g2))?.size, 1, "the joined group is followed");

  // Leaving g1: the user's version goes up by more than g1's (counters' store).
  m.set(userKey(me), { version: 4 + 3 + 1, dialogs: {}, groups: { [g2]: member() } });
  await out.count(4);
  const left = out.events[3]!;
  assert.equal(left.version, 8 + 5);
  assert.ok(left.version > out.events[2]!.version, "the version still goes up");
  assert.deepEqual(left.body.groups, { [g2]: { unread: 5, mentions: 0 } });
  assert.equal(left.body.total, 5);
  assert.equal(m.listeners.get(groupKey(g1))?.size, 0, "the group left is no longer followed");
  m.set(groupKey(g1), group(9));
  await new Promise((r) => setTimeout(r, 10));
  assert.equal(out.events.length, 4, "a group left sends nothing");

  follow.stop();
  m.set(groupKey(g2), group(6));
  await new Promise((r) => setTimeout(r, 10));
  assert.equal(out.events.length, 4, "nothing after stop()");
  assert.equal(m.listeners.get(userKey(me))?.size, 0);
});

Deno.test("followCounters() fails `started` when the first read fails, and `failed` when a later group read does", async () => {
  const me = crypto.randomUUID(), g1 = crypto.randomUUID();
  const m = memoryReader();
  const broken: Reader = { ...m.reader, read: () => Promise.reject(new Error("postgres down")) };
  const first = followCounters(broken, me, collector().send);
  await assert.rejects(first.started, /postgres down/);
  first.stop();

  m.states.set(userKey(me), { version: 1, dialogs: {} });
  let groupsFail = false;
  const flaky: Reader = {
    ...m.reader,
    readGroups: (ids) =>
      groupsFail ? Promise.reject(new Error("redis and postgres down")) : m.reader.readGroups(ids),
  };
  const later = followCounters(flaky, me, collector().send);
  await later.started;
  groupsFail = true;
  m.set(userKey(me), { version: 2, dialogs: {}, groups: { [g1]: member() } });
  await assert.rejects(later.failed, /redis and postgres down/);
  later.stop();
});

integrationTest(
  "followCounters(): one live update of a group reaches each of its 1,000 members' streams once",
  async (env) => {
    const nc = await env.nats();
    const log = createLogger("test", "warn", env.logSink);
    const live = createLiveUpdates(nc, env.prefix, log);
    const publisher = createLiveUpdates(await env.nats(), env.prefix, log);
    let messages = 0;
    const counting = nc.subscribe(`${env.prefix}_live.changes`, {
      callback: () => void messages++,
    });
    const gid = crypto.randomUUID();
    const m = memoryReader(live);
    m.states.set(groupKey(gid), group(1));
    const members = Array.from({ length: 1_000 }, () => crypto.randomUUID());
    for (const id of members) {
      m.states.set(userKey(id), { version: 1, dialogs: {}, groups: { [gid]: member() } });
    }
    const outs = members.map(() => collector());
    const follows = members.map((id, i) => followCounters(m.reader, id, outs[i]!.send));
    try {
      await Promise.all(follows.map((f) => f.started));
      await nc.flush();
      const acked = await publisher.publish([{ key: groupKey(gid), state: group(2) }], {
        awaitFrom: [live.instanceId],
        timeoutMs: 5_000,
      });
      assert.ok(acked.has(live.instanceId), "applied by the streams' instance");
      await Promise.all(outs.map((o) => o.count(2)));
      for (const out of outs) {
        assert.deepEqual(out.events.map((e) => e.version), [2, 3], "one event each, id going up");
        assert.deepEqual(out.events[1]!.body.groups, { [gid]: { unread: 2, mentions: 0 } });
      }
      assert.equal(messages, 1, "one NATS message for 1,000 streams");
    } finally {
      for (const f of follows) f.stop();
      counting.unsubscribe();
      live.close();
      publisher.close();
    }
  },
);
