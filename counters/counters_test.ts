import assert from "node:assert/strict";
import { withNoGroups } from "../testing/clients.ts";
import {
  composedVersion,
  countersBody,
  countersJson,
  groupCount,
  type GroupCounters,
  type Membership,
  unreadFor,
  type UserCounters,
} from "./counters.ts";

Deno.test("countersBody() sums the total and leaves out peers at zero", () => {
  assert.deepEqual(
    countersBody({ version: 3, dialogs: { a: 2, b: 0, c: 1 } }),
    withNoGroups({ total: 3, dialogs: { a: 2, c: 1 } }),
  );
  assert.deepEqual(
    countersBody({ version: 0, dialogs: {} }),
    withNoGroups({ total: 0, dialogs: {} }),
  );
});

Deno.test("unreadFor() answers 0 for an unknown peer and ignores case", () => {
  const counters = { version: 1, dialogs: { "ab-cd": 4 } };
  assert.equal(unreadFor(counters, "AB-CD"), 4);
  assert.equal(unreadFor(counters, "zz"), 0);
});

Deno.test("countersJson() is countersBody() as JSON, the same string for the same counters", () => {
  const counters = { version: 4, dialogs: { a: 2, b: 0 } };
  const empty = '"groups":{},"mentions":0,"muted":[]';
  assert.equal(countersJson(counters), `{"total":2,"dialogs":{"a":2},${empty}}`);
  assert.equal(countersJson(counters), countersJson(counters));
  assert.equal(
    countersJson({ version: 5, dialogs: { a: 3 } }),
    `{"total":3,"dialogs":{"a":3},${empty}}`,
  );
});

const member = (m: Partial<Membership> = {}): Membership => ({
  joinedSeq: 0,
  readSeq: 0,
  muted: false,
  own: [],
  mentions: [],
  ...m,
});
const group = (g: Partial<GroupCounters> = {}): GroupCounters => ({
  version: 1,
  lastSeq: 0,
  deleted: [],
  mentionsAll: [],
  ...g,
});

Deno.test("groupCount() counts the messages after the later of joined and read", () => {
  assert.deepEqual(groupCount(member(), group({ lastSeq: 5 })), { unread: 5, mentions: 0 });
  assert.deepEqual(groupCount(member({ readSeq: 3 }), group({ lastSeq: 5 })), {
    unread: 2,
    mentions: 0,
  });
  assert.deepEqual(groupCount(member({ joinedSeq: 4, readSeq: 1 }), group({ lastSeq: 5 })), {
    unread: 1,
    mentions: 0,
  });
  assert.deepEqual(groupCount(member({ readSeq: 9 }), group({ lastSeq: 5 })), {
    unread: 0,
    mentions: 0,
  });
  assert.deepEqual(groupCount(member(), undefined), { unread: 0, mentions: 0 });
});

Deno.test("groupCount() leaves out the member's own messages and deleted ones after the position", () => {
  const g = group({ lastSeq: 10, deleted: [2, 7, 9] });
  assert.deepEqual(groupCount(member({ readSeq: 5, own: [6, 8] }), g), {
    unread: 10 - 5 - 2 - 2,
    mentions: 0,
  });
});

Deno.test("groupCount() counts named and @all mentions once, never the member's own @all", () => {
  const g = group({ lastSeq: 10, mentionsAll: [3, 6, 8] });
  assert.deepEqual(groupCount(member({ readSeq: 4, own: [8], mentions: [5, 9] }), g), {
    unread: 10 - 4 - 1,
    mentions: 2 + 2 - 1,
  });
});

Deno.test("countersBody() adds groups and mentions, and leaves muted conversations out of total", () => {
  const groups = new Map([["g1", group({ lastSeq: 4, mentionsAll: [4] })], [
    "g2",
    group({ lastSeq: 2 }),
  ]]);
  const counters: UserCounters = {
    version: 1,
    dialogs: { p1: 2, p2: 3 },
    muted: ["p2"],
    groups: { g1: member({ readSeq: 1 }), g2: member({ muted: true }), g3: member() },
  };
  assert.deepEqual(countersBody(counters, (id) => groups.get(id)), {
    total: 2 + 3,
    dialogs: { p1: 2, p2: 3 },
    groups: { g1: { unread: 3, mentions: 1 }, g2: { unread: 2, mentions: 0 } },
    mentions: 1,
    muted: ["p2", "g2"],
  });
  assert.equal(composedVersion(counters, (id) => groups.get(id)), 3);
});

Deno.test("countersJson() makes a new body when a group's version moves", () => {
  const groups = new Map([["g1", group({ lastSeq: 1 })]]);
  const counters: UserCounters = { version: 1, dialogs: {}, groups: { g1: member() } };
  const first = countersJson(counters, (id) => groups.get(id));
  groups.set("g1", group({ version: 2, lastSeq: 2 }));
  const second = countersJson(counters, (id) => groups.get(id));
  assert.notEqual(first, second);
  assert.equal(JSON.parse(second).groups.g1.unread, 2);
});

Deno.test("countersJson() tells group states apart even when their versions add up the same", () => {
  const counters: UserCounters = {
    version: 1,
    dialogs: {},
    groups: { g1: member(), g2: member() },
  };
  const first = new Map([["g1", group({ version: 2, lastSeq: 2 })], ["g2", group({ version: 1 })]]);
  const second = new Map([["g1", group({ version: 1 })], [
    "g2",
    group({ version: 2, lastSeq: 1 }),
  ]]);
  const a = JSON.parse(countersJson(counters, (id) => first.get(id)));
  const b = JSON.parse(countersJson(counters, (id) => second.get(id)));
  assert.deepEqual(a.groups, { g1: { unread: 2, mentions: 0 } });
  assert.deepEqual(b.groups, { g2: { unread: 1, mentions: 0 } });
});
