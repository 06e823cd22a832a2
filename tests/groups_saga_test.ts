/**
 * Groups end to end through both real services: the saga's compensation and timeout for group
 * messages, read-your-saga, deletes, leaves and joins, each ending with no drift.
 */
import assert from "node:assert/strict";
import { verifyCounters } from "../scripts/verify.ts";
import { bearer, call, integrationTest, type TestEnv, waitFor } from "../testing/env.ts";
import { send, statusOf, waitForStatus } from "../testing/clients.ts";
import {
  addMembers,
  createGroup,
  deleteMessage,
  fullCountersOf,
  groupCountOf,
  groupRead,
  groupSend,
  removeMember,
} from "../testing/group_clients.ts";

const uuid = () => crypto.randomUUID();

/** Waits until verify finds no drift in the tables. */
async function noDrift(env: TestEnv) {
  let last: unknown;
  await waitFor(async () => {
    const { drift } = await verifyCounters(env.dialogsDatabaseUrl, env.countersDatabaseUrl);
    last = drift;
    return drift.length === 0;
  }, { what: "no drift", timeoutMs: 15_000 }).catch((err) => {
    throw new Error(`${err.message}: ${JSON.stringify(last)}`);
  });
}

integrationTest(
  "groups saga: a CHECK on group_counters.last_seq fails the 4th group send, compensated and " +
    "counted nowhere",
  async (env) => {
    const dialogs = await env.startDialogs();
    const counters = await env.startCounters();
    const a = uuid(), b = uuid(), c = uuid();
    const group = await createGroup(dialogs, a, [b, c]);
    await env.sql("counters")`
      alter table group_counters add constraint at_most_three check (last_seq <= 3)`;
    for (let i = 1; i <= 3; i++) {
      const sent = await groupSend(dialogs, a, group, `m${i}`, [b]);
      await waitForStatus(dialogs, a, sent.messageId, "committed");
    }
    const fourth = await groupSend(dialogs, a, group, "m4", ["all"]);
    await waitForStatus(dialogs, a, fourth.messageId, "failed");

    assert.equal(await statusOf(dialogs, b, fourth.messageId), undefined, "never visible to b");
    assert.deepEqual(await groupCountOf(counters, b, group), { unread: 3, mentions: 3 });
    assert.deepEqual(await groupCountOf(counters, c, group), { unread: 3, mentions: 0 });
    assert.deepEqual(await groupCountOf(counters, a, group), { unread: 0, mentions: 0 });
    const list = await call(`${dialogs.url}/api/groups/${group}/list`, { auth: await bearer(b) });
    assert.equal(list.status, 200);
    assert.deepEqual(list.body.messages.map((m: { seq: number }) => m.seq), [3, 2, 1]);
    const own = await call(`${dialogs.url}/api/groups/${group}/list`, { auth: await bearer(a) });
    const failed = own.body.messages.find((m: { id: string }) => m.id === fourth.messageId);
    assert.equal(failed?.status, "failed");
    assert.equal(failed?.seq, null);
    const [row] = await env.sql("counters")`
      select last_seq::int from group_counters where group_id = ${group}`;
    assert.equal(row!.last_seq, 3);
    await noDrift(env);
  },
);

integrationTest(
  "groups saga: a group send counters does not answer within SAGA_TIMEOUT_MS fails, and when " +
    "counters returns it is counted nowhere",
  async (env) => {
    const dialogs = await env.startDialogs({ overrides: { SAGA_TIMEOUT_MS: 300 } });
    const a = uuid(), b = uuid();
    const group = await createGroup(dialogs, a, [b]);
    const late = await groupSend(dialogs, a, group, "nobody counts me", ["all"]);
    await waitForStatus(dialogs, a, late.messageId, "failed");

    const counters = await env.startCounters();
    await waitFor(async () => {
      const [row] = await env.sql("counters")`
        select outcome from ledger where transaction_id = ${late.transactionId}`;
      return row?.outcome === "cancelled";
    }, { what: "counters to apply the send and its cancel" });
    assert.deepEqual(await groupCountOf(counters, b, group), { unread: 0, mentions: 0 });
    assert.equal(
      await statusOf(dialogs, a, late.messageId),
      "failed",
      "a late reply never flips it",
    );
    assert.equal(await statusOf(dialogs, b, late.messageId), undefined, "never visible to b");

    const next = await groupSend(dialogs, a, group, "counted", [b]);
    await waitForStatus(dialogs, a, next.messageId, "committed");
    assert.deepEqual(await groupCountOf(counters, b, group), { unread: 1, mentions: 1 });
    await noDrift(env);
  },
);

integrationTest(
  "groups saga: once a group message is committed, every member's GET /api/counters includes it " +
    "(read-your-saga), with the mentions",
  async (env) => {
    const dialogs = await env.startDialogs();
    const counters = await env.startCounters();
    const a = uuid(), b = uuid(), c = uuid();
    const group = await createGroup(dialogs, a, [b, c]);
    for (let i = 1; i <= 5; i++) {
      const sent = await groupSend(dialogs, a, group, `m${i}`, i % 2 ? [b, b, a] : ["all"]);
      await waitFor(async () => (await statusOf(dialogs, b, sent.messageId)) === "committed", {
        what: `m${i} committed`,
        intervalMs: 5,
      });
      // No wait in between: the badge is never behind the message.
      // b is named (once, and a's naming of itself counts nothing) or covered by `all` each time.
      assert.deepEqual(await groupCountOf(counters, b, group), { unread: i, mentions: i });
      assert.deepEqual(await groupCountOf(counters, c, group), {
        unread: i,
        mentions: Math.floor(i / 2),
      });
    }
    assert.deepEqual(await groupCountOf(counters, a, group), { unread: 0, mentions: 0 });
    const body = await fullCountersOf(counters, c);
    assert.equal(body.total, 5);
    assert.equal(body.mentions, 2);
    await noDrift(env);
  },
);

integrationTest(
  "groups saga: deleting a message drops the unread and mentions only of members who had not read it",
  async (env) => {
    const dialogs = await env.startDialogs();
    const counters = await env.startCounters();
    const a = uuid(), b = uuid(), c = uuid();
    const group = await createGroup(dialogs, a, [b, c]);
    const m1 = await groupSend(dialogs, a, group, "first", [b, c]);
    await waitForStatus(dialogs, a, m1.messageId, "committed");
    const m2 = await groupSend(dialogs, a, group, "second", ["all"]);
    await waitForStatus(dialogs, a, m2.messageId, "committed");
    assert.deepEqual(await groupRead(dialogs, b, group, m1.messageId), { read: 1, readSeq: 1 });
    // The read reaches counters by its event (no read-your-read promise): wait for it.
    await waitFor(async () => (await groupCountOf(counters, b, group)).unread === 1, {
      what: "b's read",
    });
    assert.deepEqual(await groupCountOf(counters, b, group), { unread: 1, mentions: 1 });
    assert.deepEqual(await groupCountOf(counters, c, group), { unread: 2, mentions: 2 });

    const deleted = await deleteMessage(dialogs, a, m1.messageId);
    assert.equal(deleted.status, 200, JSON.stringify(deleted.body));
    assert.deepEqual(deleted.body, { id: m1.messageId, status: "deleted" });
    const again = await deleteMessage(dialogs, a, m1.messageId);
    assert.deepEqual([again.status, again.body], [200, deleted.body], "a repeat answers the same");
    assert.equal((await deleteMessage(dialogs, b, m2.messageId)).status, 404, "not the sender");
    await waitFor(async () => (await groupCountOf(counters, c, group)).unread === 1, {
      what: "c's count to drop",
    });
    assert.deepEqual(await groupCountOf(counters, c, group), { unread: 1, mentions: 1 });
    assert.deepEqual(await groupCountOf(counters, b, group), { unread: 1, mentions: 1 }, "read it");
    assert.equal(await statusOf(dialogs, b, m1.messageId), undefined, "gone for everyone else");

    // A dialog message: deleting it unread drops the recipient's count; deleting a read one, nothing.
    const d1 = await send(dialogs, a, b, "unread");
    await waitForStatus(dialogs, a, d1.body.messageId, "committed");
    assert.equal((await deleteMessage(dialogs, a, d1.body.messageId)).status, 200);
    await waitFor(async () => !(a in (await fullCountersOf(counters, b)).dialogs), {
      what: "the dialog count to drop",
    });
    const pending = await groupSend(dialogs, a, group, "too soon");
    const early = await deleteMessage(dialogs, a, pending.messageId);
    assert.ok([200, 409].includes(early.status), "pending: 409, or committed already");
    await noDrift(env);
  },
);

integrationTest(
  "groups saga: a member who leaves loses the group from its counters and every group route " +
    "answers it 404; a new member starts at 0",
  async (env) => {
    const dialogs = await env.startDialogs();
    const counters = await env.startCounters();
    const a = uuid(), b = uuid(), d = uuid();
    const group = await createGroup(dialogs, a, [b]);
    const m1 = await groupSend(dialogs, a, group, "before", ["all"]);
    await waitForStatus(dialogs, a, m1.messageId, "committed");
    assert.deepEqual(await groupCountOf(counters, b, group), { unread: 1, mentions: 1 });

    assert.equal(await removeMember(dialogs, b, group, b), 204);
    await waitFor(async () => !((await fullCountersOf(counters, b)).groups ?? {})[group], {
      what: "the group to leave b's counters",
    });
    const auth = await bearer(b);
    const routes: [string, string, unknown?][] = [
      ["GET", `/api/groups/${group}`],
      ["GET", `/api/groups/${group}/list`],
      ["POST", `/api/groups/${group}/send`, { text: "still here?" }],
      ["POST", `/api/groups/${group}/read`, {}],
      ["PUT", `/api/groups/${group}/mute`, { muted: true }],
      ["POST", `/api/groups/${group}/members`, { userIds: [uuid()] }],
      ["GET", `/api/messages/${m1.messageId}`],
    ];
    for (const [method, path, body] of routes) {
      const res = await call(`${dialogs.url}${path}`, { method, auth, body });
      assert.equal(res.status, 404, `${method} ${path}: ${JSON.stringify(res.body)}`);
    }
    const served = await call(`${counters.url}/api/counters/groups/${group}`, { auth });
    assert.equal(served.status, 404);

    assert.equal(await addMembers(dialogs, a, group, [d, a]), 1);
    const joined = await call(`${dialogs.url}/api/groups/${group}`, { auth: await bearer(d) });
    assert.equal(joined.status, 200);
    assert.equal(joined.body.me.joinedSeq, 1);
    await waitFor(async () => {
      const res = await call(`${counters.url}/api/counters/groups/${group}`, {
        auth: await bearer(d),
      });
      return res.status === 200 && res.body;
    }, { what: "d in counters" });
    assert.deepEqual(await groupCountOf(counters, d, group), { unread: 0, mentions: 0 });
    const m2 = await groupSend(dialogs, a, group, "after", ["all"]);
    await waitForStatus(dialogs, a, m2.messageId, "committed");
    assert.deepEqual(await groupCountOf(counters, d, group), { unread: 1, mentions: 1 });
    await noDrift(env);
  },
);
