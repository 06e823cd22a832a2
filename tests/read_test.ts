/** The mark-read saga end to end: dialogs marks messages read, counters decrements once. */
import assert from "node:assert/strict";
import {
  bearer,
  call,
  integrationTest,
  type Service,
  type TestEnv,
  waitFor,
} from "../testing/env.ts";
import { countersOf, markRead, send, waitForStatus, withNoGroups } from "../testing/clients.ts";

const user = () => crypto.randomUUID();

async function setup(env: TestEnv, count: number) {
  const dialogs = await env.startDialogs();
  const counters = await env.startCounters();
  const a = user(), b = user();
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const r = await send(dialogs, a, b, `m${i}`);
    ids.push(r.body.messageId);
  }
  for (const id of ids) await waitForStatus(dialogs, a, id, "committed");
  return { dialogs, counters, a, b, ids };
}

async function unreadOf(counters: Service, b: string, a: string) {
  return (await countersOf(counters, b)).dialogs[a] ?? 0;
}

integrationTest(
  "mark read: up to a message reads it and older ones, and counters follow",
  async (env) => {
    const { dialogs, counters, a, b, ids } = await setup(env, 4);
    assert.equal(await unreadOf(counters, b, a), 4);
    assert.equal(await markRead(dialogs, b, a, ids[1]), 2);
    await waitFor(async () => (await unreadOf(counters, b, a)) === 2, { what: "counter 2" });
    const list = await call(`${dialogs.url}/api/dialog/${a}/list`, { auth: await bearer(b) });
    const readAt = Object.fromEntries(
      list.body.messages.map((
        m: { text: string; readAt: string | null },
      ) => [m.text, m.readAt !== null]),
    );
    assert.deepEqual(readAt, { m0: true, m1: true, m2: false, m3: false });

    assert.equal(await markRead(dialogs, b, a), 2, "without upTo: everything left");
    await waitFor(async () => (await countersOf(counters, b)).total === 0, { what: "counter 0" });
  },
);

integrationTest(
  "mark read: repeating it reads nothing more and changes no counter",
  async (env) => {
    const { dialogs, counters, a, b } = await setup(env, 2);
    assert.equal(await markRead(dialogs, b, a), 2);
    await waitFor(async () => (await countersOf(counters, b)).total === 0, { what: "counter 0" });
    assert.equal(await markRead(dialogs, b, a), 0);
    const [outbox] = await env.sql("dialogs")`
    select count(*)::int as n from outbox where payload->>'type' = 'dialogs.messages.read'`;
    assert.equal(outbox!.n, 1, "a read of nothing emits no event");
    const more = await send(dialogs, a, b, "new");
    await waitForStatus(dialogs, a, more.body.messageId, "committed");
    assert.deepEqual(
      await countersOf(counters, b),
      withNoGroups({ total: 1, dialogs: { [a]: 1 } }),
    );
  },
);

integrationTest(
  "mark read: concurrent reads of one dialog count each message once",
  async (env) => {
    const { dialogs, counters, a, b } = await setup(env, 5);
    const results = await Promise.all([1, 2, 3, 4].map(() => markRead(dialogs, b, a)));
    assert.equal(results.reduce((x, y) => x + y, 0), 5);
    await waitFor(async () => (await countersOf(counters, b)).total === 0, { what: "counter 0" });
    const extra = await send(dialogs, a, b, "after");
    await waitForStatus(dialogs, a, extra.body.messageId, "committed");
    assert.equal(await unreadOf(counters, b, a), 1, "the counter never went below zero");
  },
);

integrationTest(
  "mark read: the sender's own pending or failed messages and other dialogs stay untouched",
  async (env) => {
    const { dialogs, counters, a, b } = await setup(env, 1);
    const c = user();
    const fromC = await send(dialogs, c, b, "from c");
    await waitForStatus(dialogs, c, fromC.body.messageId, "committed");
    assert.equal(await markRead(dialogs, a, b), 0, "a has nothing unread from b");
    assert.equal(await markRead(dialogs, b, a), 1);
    await waitFor(async () => (await countersOf(counters, b)).total === 1, {
      what: "only c's left",
    });
    assert.deepEqual((await countersOf(counters, b)).dialogs, { [c]: 1 });
  },
);

integrationTest("mark read: bad input gets a problem and changes nothing", async (env) => {
  const { dialogs, counters, a, b } = await setup(env, 1);
  const auth = await bearer(b);
  const url = `${dialogs.url}/api/dialog/${a}/read`;
  for (const body of ['{"upTo":"nope"}', "{oops", '{"upTo":5}']) {
    const res = await call(url, { method: "POST", auth, body });
    assert.equal(res.status, 400, body);
    assert.equal(res.headers.get("Content-Type"), "application/problem+json");
  }
  const unknown = await call(url, { auth, body: { upTo: crypto.randomUUID() } });
  assert.equal(unknown.status, 404);
  assert.equal(
    (await call(`${dialogs.url}/api/dialog/nope/read`, { method: "POST", auth })).status,
    400,
  );
  assert.equal((await call(url, { method: "POST" })).status, 401);
  assert.equal(await unreadOf(counters, b, a), 1);
});
