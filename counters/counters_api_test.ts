import assert from "node:assert/strict";
import { withNoGroups } from "../testing/clients.ts";
import type { Sql } from "../shared/db.ts";
import { createLogger } from "../shared/log.ts";
import { bearer, call, integrationTest, type Service } from "../testing/env.ts";
import { groupKey, userKey } from "./cache_keys.ts";
import { loadManyGroupCounters, loadManyUserCounters } from "./counter_store.ts";
import { createLiveUpdates } from "./live_updates.ts";
import { startCounters } from "./main.ts";

integrationTest(
  "counters API: 401 without a token, 400 for a bad peer id, zeros for a new user",
  async (env) => {
    const c = await env.startCounters();
    const me = crypto.randomUUID();
    const res = await call(`${c.url}/api/counters`);
    assert.equal(res.status, 401);
    assert.equal(res.headers.get("Content-Type"), "application/problem+json");
    const bad = await call(`${c.url}/api/counters/nope`, { auth: await bearer(me) });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.errors[0].path, "peerId");
    assert.deepEqual(
      (await call(`${c.url}/api/counters`, { auth: await bearer(me) })).body,
      withNoGroups({ total: 0, dialogs: {} }),
    );
    const peer = crypto.randomUUID();
    assert.deepEqual(
      (await call(`${c.url}/api/counters/${peer}`, { auth: await bearer(me) })).body,
      {
        peerId: peer,
        unread: 0,
      },
    );
  },
);

integrationTest("counters API: reads Postgres on a cache miss and fills the cache", async (env) => {
  const c = await env.startCounters();
  const me = crypto.randomUUID(), peer = crypto.randomUUID();
  const sql = env.sql("counters");
  await sql`insert into unread_counters (user_id, peer_id, unread) values (${me}, ${peer}, 4)`;
  await sql`insert into counter_versions (user_id, version) values (${me}, 4)`;
  const res = await call(`${c.url}/api/counters`, { auth: await bearer(me) });
  assert.deepEqual(res.body, withNoGroups({ total: 4, dialogs: { [peer]: 4 } }));
  const cached = await env.cachedEntry(me);
  assert.equal(cached, `4|{"dialogs":{"${peer}":4}}`);
});

integrationTest(
  "counters API: with Redis unreachable reads come from Postgres and readiness names Redis",
  async (env) => {
    const c = await startCounters(env.countersConfig({ REDIS_URL: "redis://127.0.0.1:1" }), {
      logSink: env.logSink,
      hostname: "127.0.0.1",
    });
    try {
      const url = `http://127.0.0.1:${c.port}`;
      const me = crypto.randomUUID(), peer = crypto.randomUUID();
      await env.sql(
        "counters",
      )`insert into unread_counters (user_id, peer_id, unread) values (${me}, ${peer}, 2)`;
      const res = await call(`${url}/api/counters`, { auth: await bearer(me) });
      assert.deepEqual(res.body, withNoGroups({ total: 2, dialogs: { [peer]: 2 } }));
      const ready = await call(`${url}/health/ready`);
      assert.equal(ready.status, 503);
      assert.equal(ready.body.checks.postgres, "ok");
      assert.notEqual(ready.body.checks.redis, "ok");
      assert.match(ready.body.detail, /redis/);
    } finally {
      await c.stop();
    }
  },
);

integrationTest(
  "counters API: HEAD on the stream answers at once and opens no stream",
  async (env) => {
    const c = await env.startCounters();
    const me = crypto.randomUUID();
    const res = await fetch(`${c.url}/api/counters/stream`, {
      method: "HEAD",
      headers: { Authorization: await bearer(me) },
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("Content-Type"), "text/event-stream");
    await new Promise((r) => setTimeout(r, 100));
    const metrics = await fetch(`${c.url}/metrics`).then((r) => r.text());
    assert.match(metrics, /\ncounters_live_streams 0\n/);
  },
);

/** Puts `users` in group `group` in the counters database (founding members, version 1). */
async function addMembers(sql: Sql, group: string, users: string[], muted = false) {
  for (const user of users) {
    await sql`
      insert into group_members (user_id, group_id, member, joined_seq, read_seq, muted, version)
      values (${user}, ${group}, true, 0, 0, ${muted}, 1)`;
    await sql`
      insert into counter_versions (user_id, version) values (${user}, 1)
      on conflict (user_id) do update set version = counter_versions.version + 1`;
  }
}

/** Counts `n` group messages from `sender` in the counters database, the last one to @all. */
async function countGroupMessages(sql: Sql, group: string, sender: string, n: number) {
  for (let i = 0; i < n; i++) {
    const [row] = await sql<{ seq: number }[]>`
      insert into group_counters (group_id, last_seq, version) values (${group}, 1, 1)
      on conflict (group_id) do update
      set last_seq = group_counters.last_seq + 1, version = group_counters.version + 1
      returning last_seq::int as seq`;
    await sql`
      insert into group_messages (group_id, seq, message_id, sender_id, mentions_all)
      values (${group}, ${row!.seq}, ${crypto.randomUUID()}, ${sender}, ${i === n - 1})`;
  }
}

integrationTest(
  "counters API: GET /api/counters/groups/{groupId} answers a member's counts, 404 to anyone else",
  async (env) => {
    const c = await env.startCounters();
    const sql = env.sql("counters");
    const me = crypto.randomUUID(), sender = crypto.randomUUID(), group = crypto.randomUUID();
    await addMembers(sql, group, [sender]);
    await addMembers(sql, group, [me], true);
    await countGroupMessages(sql, group, sender, 3);
    const auth = await bearer(me);
    const res = await call(`${c.url}/api/counters/groups/${group.toUpperCase()}`, { auth });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.deepEqual(res.body, { groupId: group, unread: 3, mentions: 1, muted: true });
    assert.deepEqual((await call(`${c.url}/api/counters`, { auth })).body, {
      total: 0,
      dialogs: {},
      groups: { [group]: { unread: 3, mentions: 1 } },
      mentions: 1,
      muted: [group],
    });
    const stranger = await call(`${c.url}/api/counters/groups/${group}`, {
      auth: await bearer(crypto.randomUUID()),
    });
    assert.equal(stranger.status, 404);
    assert.equal(stranger.headers.get("Content-Type"), "application/problem+json");
    const bad = await call(`${c.url}/api/counters/groups/nope`, { auth });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.errors[0].path, "groupId");
    const doc = await call(`${c.url}/openapi.json`);
    assert.ok(doc.body.paths["/api/counters/groups/{groupId}"].get.responses["404"]);
    assert.deepEqual(
      Object.keys(doc.body.components.schemas.Counters.properties).sort(),
      ["dialogs", "groups", "mentions", "muted", "total"],
    );
  },
);

/** The `counters` events of a stream, as {id, data}; `next()` waits for the next one. */
async function openCountersStream(service: Service, user: string) {
  const res = await fetch(`${service.url}/api/counters/stream`, {
    headers: { Authorization: await bearer(user) },
  });
  assert.equal(res.status, 200);
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  return {
    async next(): Promise<{ id: number; data: Record<string, unknown> }> {
      for (;;) {
        const end = buffer.indexOf("\n\n");
        if (end >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const id = /^id: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (id !== undefined && data !== undefined) {
            return { id: Number(id), data: JSON.parse(data) };
          }
          continue;
        }
        const { value, done } = await reader.read();
        assert.ok(!done, "the stream ended");
        buffer += value;
      }
    },
    cancel: () => reader.cancel().catch(() => {}),
  };
}

integrationTest(
  "counters stream: a group message sends one event to each member's stream, ids going up; a member who leaves sees the group go, the id still going up",
  async (env) => {
    const c = await env.startCounters();
    const sql = env.sql("counters");
    const [sender, one, two] = [1, 2, 3].map(() => crypto.randomUUID());
    const group = crypto.randomUUID();
    await addMembers(sql, group, [sender!, one!, two!]);
    // Another counters instance's changed(): it publishes the new states as one live update.
    const live = createLiveUpdates(await env.nats(), env.prefix, createLogger("test", "warn"));
    const streams = [await openCountersStream(c, one!), await openCountersStream(c, two!)];
    try {
      const opened = await Promise.all(streams.map((s) => s.next()));
      await countGroupMessages(sql, group, sender!, 1);
      const [state] = await loadManyGroupCounters(sql, [group]);
      await live.publish([{ key: groupKey(group), state: state! }]);
      const after = await Promise.all(streams.map((s) => s.next()));
      for (const [i, event] of after.entries()) {
        assert.ok(event.id > opened[i]!.id, `id ${event.id} > ${opened[i]!.id}`);
        assert.deepEqual(event.data.groups, { [group]: { unread: 1, mentions: 1 } });
      }

      // `one` leaves: its version goes up by 1 + the group's (counters' store does so).
      await sql`update group_members set member = false, version = 2
                where user_id = ${one!} and group_id = ${group}`;
      await sql`update counter_versions set version = version + 1 + ${state!.version}
                where user_id = ${one!}`;
      const [left] = await loadManyUserCounters(sql, [one!]);
      await live.publish([{ key: userKey(one!), state: left! }]);
      const gone = await streams[0]!.next();
      assert.ok(gone.id > after[0]!.id, `id ${gone.id} > ${after[0]!.id}`);
      assert.deepEqual(gone.data, withNoGroups({ total: 0, dialogs: {} }));
    } finally {
      for (const s of streams) await s.cancel();
      live.close();
    }
  },
);
