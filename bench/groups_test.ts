import assert from "node:assert/strict";
import { describeLookups, percentile, readerGroups, streamLatencies } from "./groups.ts";

Deno.test("readerGroups() puts every reader in exactly 50 of 100 groups of 500", () => {
  const groups = readerGroups(1_000, 100, 50);
  assert.equal(groups.length, 100);
  for (const members of groups) assert.equal(members.length, 500);
  const per = new Map<number, number>();
  for (const members of groups) for (const i of members) per.set(i, (per.get(i) ?? 0) + 1);
  assert.equal(per.size, 1_000);
  assert.deepEqual(new Set(per.values()), new Set([50]));
});

Deno.test("percentile() takes the nearest rank, and 0 of nothing", () => {
  const values = Array.from({ length: 100 }, (_, i) => 100 - i);
  assert.equal(percentile(values, 99), 99);
  assert.equal(percentile(values, 50), 50);
  assert.equal(percentile(values, 100), 100);
  assert.equal(percentile([7], 99), 7);
  assert.equal(percentile([], 99), 0);
});

Deno.test("streamLatencies() times each message to the first event that counts it", () => {
  // Three messages committed at 1000, 1100 and 1200 ms.
  const commits = [1_000, 1_100, 1_200];
  const streams = [
    // Opened with 5 unread; one event per message.
    [{ at: 0, unread: 5 }, { at: 1_010, unread: 6 }, { at: 1_120, unread: 7 }, {
      at: 1_205,
      unread: 8,
    }],
    // Opened with 0; the first two messages arrive in one event, a repeat changes nothing.
    [{ at: 0, unread: 0 }, { at: 1_150, unread: 2 }, { at: 1_160, unread: 2 }, {
      at: 1_300,
      unread: 3,
    }],
  ];
  const { samples, missing } = streamLatencies(commits, streams);
  assert.deepEqual(samples, [10, 20, 5, 150, 50, 100]);
  assert.equal(missing, 0);
});

Deno.test("streamLatencies() counts the messages a stream never showed as missing", () => {
  const commits = [1_000, 1_100, 1_200];
  const { samples, missing } = streamLatencies(commits, [
    [{ at: 0, unread: 1 }, { at: 1_050, unread: 2 }],
    [{ at: 0, unread: 0 }],
  ]);
  assert.deepEqual(samples, [50]);
  assert.equal(missing, 2 + 3);
});

Deno.test("describeLookups() gives what changed between two readings, by result", () => {
  assert.equal(
    describeLookups({ local: 10, hit: 2 }, { local: 25, hit: 2, miss: 1 }),
    "local 15, miss 1",
  );
  assert.equal(describeLookups({ local: 3 }, { local: 3 }), "none");
});
