import assert from "node:assert/strict";
import { createLogger } from "../shared/log.ts";
import { integrationTest } from "../testing/env.ts";
import { type CachedState, userKey } from "./cache_keys.ts";
import { createLiveUpdates, LIVE_MESSAGE_BYTES, packMessages } from "./live_updates.ts";

/** A user state of about `groups` × 90 bytes of JSON. */
function userInGroups(groups: number): CachedState {
  const memberships = Object.fromEntries(
    Array.from({ length: groups }, () => [crypto.randomUUID(), {
      joinedSeq: 0,
      readSeq: 0,
      muted: false,
      own: [],
      mentions: [],
    }]),
  );
  return { version: 1, dialogs: {}, groups: memberships };
}

Deno.test("packMessages() splits a batch into messages under the limit, in order", () => {
  const changes = Array.from({ length: 50 }, (_, i) => ({
    key: userKey(crypto.randomUUID()),
    state: { version: i + 1, dialogs: {} },
  }));
  const messages = packMessages(changes, 1_000);
  assert.ok(messages.length > 1);
  for (const m of messages) assert.ok(m.length <= 1_000, `${m.length} bytes`);
  const back = messages.flatMap((m) => JSON.parse(m));
  assert.deepEqual(back, changes);
});

Deno.test("packMessages() sends a state too large for any message as its key only", () => {
  const big = { key: userKey(crypto.randomUUID()), state: userInGroups(100) };
  const small = { key: userKey(crypto.randomUUID()), state: { version: 2, dialogs: {} } };
  const back = packMessages([big, small], 2_000).flatMap((m) => JSON.parse(m));
  assert.deepEqual(back, [{ key: big.key, state: null }, small]);
});

integrationTest(
  "live updates: a batch larger than one NATS message arrives whole and is acknowledged",
  async (env) => {
    const log = createLogger("test", "warn", env.logSink);
    const receiver = createLiveUpdates(await env.nats(), env.prefix, log);
    const publisher = createLiveUpdates(await env.nats(), env.prefix, log);
    const seen = new Map<string, CachedState>();
    receiver.onChange((key, state) => seen.set(key, state));
    try {
      // 500 users in 50 groups each: about 2.3 MB of states, more than NATS' 1 MiB max_payload.
      const changes = Array.from({ length: 500 }, () => ({
        key: userKey(crypto.randomUUID()),
        state: userInGroups(50),
      }));
      assert.ok(JSON.stringify(changes).length > 1024 * 1024);
      const acked = await publisher.publish(changes, {
        awaitFrom: [receiver.instanceId],
        timeoutMs: 5_000,
      });
      assert.ok(acked.has(receiver.instanceId), "acknowledged once every message was applied");
      assert.equal(seen.size, changes.length);
      for (const { key, state } of changes) assert.deepEqual(seen.get(key), state);
      assert.ok(LIVE_MESSAGE_BYTES < 1024 * 1024);
    } finally {
      receiver.close();
      publisher.close();
    }
  },
);

integrationTest(
  "deliverHere() reaches this instance's subscribers at once, and neither onChange() nor another instance",
  async (env) => {
    const log = createLogger("test", "warn", env.logSink);
    const here = createLiveUpdates(await env.nats(), env.prefix, log);
    const other = createLiveUpdates(await env.nats(), env.prefix, log);
    const key = userKey(crypto.randomUUID());
    const state = { version: 3, dialogs: {} };
    const heard: string[] = [];
    here.subscribe(key, (s) => heard.push(`here ${s.version}`));
    other.subscribe(key, (s) => heard.push(`other ${s.version}`));
    here.onChange((_, s) => heard.push(`onChange ${s.version}`));
    try {
      here.deliverHere([{ key, state }]);
      assert.deepEqual(heard, ["here 3"], "synchronously, to this instance's subscriber only");
      await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual(heard, ["here 3"], "nothing travelled");
    } finally {
      here.close();
      other.close();
    }
  },
);
