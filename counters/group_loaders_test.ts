import assert from "node:assert/strict";
import type { Sql } from "../shared/db.ts";
import { loadManyGroupCounters, loadManyUserCounters } from "./counter_store.ts";
import { countersBody, type GroupCounters } from "./counters.ts";
import { integrationTest, withCountersDatabase } from "../testing/env.ts";

const uuid = (): string => crypto.randomUUID();

/** Writes the rows counting group messages would: (seq, sender, named, to all, deleted). */
async function groupMessages(
  sql: Sql,
  groupId: string,
  messages: [number, string, string[], boolean, boolean][],
  version = messages.length,
) {
  const lastSeq = Math.max(0, ...messages.map(([seq]) => seq));
  await sql`insert into group_counters (group_id, last_seq, version)
            values (${groupId}, ${lastSeq}, ${version})`;
  for (const [seq, sender, named, toAll, deleted] of messages) {
    await sql`insert into group_messages (group_id, seq, message_id, sender_id, mentions_all, deleted)
              values (${groupId}, ${seq}, ${crypto.randomUUID()}, ${sender}, ${toAll}, ${deleted})`;
    for (const user of named) {
      await sql`insert into group_mentions (user_id, group_id, seq)
                values (${user}, ${groupId}, ${seq})`;
    }
  }
}

async function member(
  sql: Sql,
  groupId: string,
  userId: string,
  state: { member?: boolean; joinedSeq?: number; readSeq?: number; muted?: boolean } = {},
) {
  await sql`insert into group_members (user_id, group_id, member, joined_seq, read_seq, muted, version)
            values (${userId}, ${groupId}, ${state.member ?? true}, ${state.joinedSeq ?? 0},
                    ${state.readSeq ?? 0}, ${state.muted ?? false}, 1)`;
}

integrationTest(
  "loadManyGroupCounters() reads each group's version, last seq, deleted and @all seqs in order",
  async (env) => {
    await withCountersDatabase(env, async (sql) => {
      const [group, other, unknown, alice, bob] = [uuid(), uuid(), uuid(), uuid(), uuid()];
      await groupMessages(sql, group, [
        [1, alice, [], false, false],
        [2, bob, [], true, false],
        [3, alice, [bob], false, true],
        [4, alice, [], true, true],
        [5, bob, [], true, false],
      ], 7);
      await groupMessages(sql, other, [[1, alice, [], false, false]]);
      const loaded = await loadManyGroupCounters(sql, [unknown, group, other]);
      assert.deepEqual(
        loaded,
        [
          { version: 0, lastSeq: 0, deleted: [], mentionsAll: [] },
          { version: 7, lastSeq: 5, deleted: [3, 4], mentionsAll: [2, 5] },
          { version: 1, lastSeq: 1, deleted: [], mentionsAll: [] },
        ] satisfies GroupCounters[],
      );
    });
  },
);

integrationTest(
  "loadManyUserCounters() adds muted dialogs and current groups with own and mentions after the position",
  async (env) => {
    await withCountersDatabase(env, async (sql) => {
      const [group, left, alice, bob, carol, peer] = [
        uuid(),
        uuid(),
        uuid(),
        uuid(),
        uuid(),
        uuid(),
      ];
      await groupMessages(sql, group, [
        [1, alice, [bob], false, false],
        [2, bob, [alice], false, false],
        [3, alice, [bob], false, false],
        [4, alice, [bob], false, true],
        [5, carol, [alice, bob], false, false],
        [6, alice, [], true, false],
      ]);
      await member(sql, group, alice, { readSeq: 2, muted: true });
      await member(sql, group, bob, { joinedSeq: 1 });
      await member(sql, left, alice, { member: false });
      await sql`insert into dialog_mutes (user_id, peer_id, muted, version)
                values (${alice}, ${peer}, true, 2), (${bob}, ${peer}, false, 3)`;
      await sql`insert into unread_counters (user_id, peer_id, unread) values (${alice}, ${peer}, 2)`;
      await sql`insert into counter_versions (user_id, version) values (${alice}, 4)`;
      const [a, b, nobody] = await loadManyUserCounters(sql, [alice, bob, crypto.randomUUID()]);
      assert.deepEqual(a, {
        version: 4,
        dialogs: { [peer]: 2 },
        muted: [peer],
        groups: {
          [group]: { joinedSeq: 0, readSeq: 2, muted: true, own: [3, 6], mentions: [5] },
        },
      });
      assert.deepEqual(b, {
        version: 0,
        dialogs: {},
        groups: {
          [group]: { joinedSeq: 1, readSeq: 0, muted: false, own: [2], mentions: [3, 5] },
        },
      });
      assert.deepEqual(nobody, { version: 0, dialogs: {} });
    });
  },
);

integrationTest(
  "the loaded user and group states compose into the counts the contract defines",
  async (env) => {
    await withCountersDatabase(env, async (sql) => {
      const [group, alice, bob, carol, late] = [uuid(), uuid(), uuid(), uuid(), uuid()];
      await groupMessages(sql, group, [
        [1, alice, [bob], false, false], // bob: unread + mention; carol: unread
        [2, bob, [], true, false], // alice, carol: unread + mention (all)
        [3, carol, [bob], false, true], // deleted: counts for no one
        [4, alice, [], true, false], // bob, carol, late: unread + mention (all)
        [5, carol, [alice], false, false], // alice: unread + mention; bob, late: unread
      ]);
      await member(sql, group, alice, { muted: true });
      await member(sql, group, bob);
      await member(sql, group, carol, { readSeq: 4 });
      await member(sql, group, late, { joinedSeq: 3 });
      const users = await loadManyUserCounters(sql, [alice, bob, carol, late]);
      const [state] = await loadManyGroupCounters(sql, [group]);
      const bodies = users.map((u) => countersBody(u, (g) => g === group ? state : undefined));
      assert.deepEqual(bodies.map((b) => b.groups[group]), [
        { unread: 2, mentions: 2 },
        { unread: 3, mentions: 2 },
        undefined,
        { unread: 2, mentions: 1 },
      ]);
      assert.deepEqual(bodies.map((b) => [b.total, b.mentions, b.muted]), [
        [0, 2, [group]],
        [3, 2, []],
        [0, 0, []],
        [2, 1, []],
      ]);
    });
  },
);
