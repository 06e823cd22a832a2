import assert from "node:assert/strict";
import { findDrift } from "./drift.ts";

Deno.test("findDrift() reports nothing when the counters equal the truth", () => {
  const truth = [{ userId: "u", peerId: "p", unread: 2 }];
  assert.deepEqual(findDrift(truth, [{ userId: "u", peerId: "p", unread: 2 }]), []);
  assert.deepEqual(findDrift([], [{ userId: "u", peerId: "p", unread: 0 }]), []);
});

Deno.test("findDrift() reports counters too high, too low and missing", () => {
  const truth = [
    { userId: "a", peerId: "p", unread: 2 },
    { userId: "b", peerId: "p", unread: 1 },
  ];
  const counters = [
    { userId: "a", peerId: "p", unread: 3 },
    { userId: "c", peerId: "p", unread: 4 },
  ];
  assert.deepEqual(findDrift(truth, counters), [
    { userId: "a", peerId: "p", expected: 2, actual: 3 },
    { userId: "b", peerId: "p", expected: 1, actual: 0 },
    { userId: "c", peerId: "p", expected: 0, actual: 4 },
  ]);
});
