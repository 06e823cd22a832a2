import assert from "node:assert/strict";
import { createLocalCache } from "./local_cache.ts";

const c = (version: number, n = version) => ({ version, dialogs: { p: n } });

Deno.test("LocalCache keeps the newest version and never goes back", () => {
  const cache = createLocalCache();
  cache.offer("user", "u", c(2));
  cache.offer("user", "u", c(1));
  assert.deepEqual(cache.get("user", "u"), c(2));
  cache.offer("user", "u", c(3));
  assert.deepEqual(cache.get("user", "u"), c(3));
  assert.equal(cache.get("user", "other"), undefined);
});

Deno.test("LocalCache stops serving an entry after its time to live", () => {
  let t = 0;
  const cache = createLocalCache({ ttlMs: 100, now: () => t });
  cache.offer("user", "u", c(1));
  t = 100;
  assert.deepEqual(cache.get("user", "u"), c(1));
  t = 101;
  assert.equal(cache.get("user", "u"), undefined);
});

Deno.test("LocalCache evicts the least recently stored entry beyond its size", () => {
  const cache = createLocalCache({ maxEntries: 2 });
  cache.offer("user", "a", c(1));
  cache.offer("user", "b", c(1));
  cache.offer("user", "a", c(2));
  cache.offer("user", "c", c(1));
  assert.equal(cache.size, 2);
  assert.equal(cache.get("user", "b"), undefined);
  assert.deepEqual(cache.get("user", "a"), c(2));
});

Deno.test("LocalCache serves and keeps nothing while suspended", () => {
  const cache = createLocalCache();
  cache.offer("user", "u", c(1));
  cache.suspend();
  assert.equal(cache.get("user", "u"), undefined);
  cache.offer("user", "u", c(2));
  cache.resume();
  assert.equal(cache.get("user", "u"), undefined, "what was offered while suspended is not kept");
  cache.offer("user", "u", c(3));
  assert.deepEqual(cache.get("user", "u"), c(3));
});

Deno.test("LocalCache reports an entry read after refreshAfterMs once, and a confirmation keeps it served", () => {
  let t = 0;
  const cache = createLocalCache({ ttlMs: 100, refreshAfterMs: 50, now: () => t });
  const due: string[] = [];
  cache.onRefreshDue((_kind, id) => due.push(id));
  cache.offer("user", "u", c(1));
  t = 50;
  cache.get("user", "u");
  assert.deepEqual(due, [], "not yet due at refreshAfterMs itself");
  t = 51;
  assert.deepEqual(cache.get("user", "u"), c(1), "a due entry is still served");
  cache.get("user", "u");
  assert.deepEqual(due, ["u"], "reported once however often it is read");
  const held = cache.get("user", "u");
  cache.offer("user", "u", c(1)); // the same version, confirmed from Redis at t = 51
  assert.equal(cache.get("user", "u"), held, "a confirmation keeps the object held (and its body)");
  t = 101;
  assert.deepEqual(cache.get("user", "u"), c(1));
  assert.deepEqual(due, ["u"], "not due again until 50 ms after its confirmation");
  t = 140;
  assert.deepEqual(cache.get("user", "u"), c(1), "served past the first entry's time to live");
  assert.deepEqual(due, ["u", "u"], "and due again");
  t = 152;
  assert.equal(cache.get("user", "u"), undefined, "an entry not confirmed again expires");
});

Deno.test("LocalCache drops a value loaded in an earlier epoch: before a clear, a suspend or a resume", () => {
  const cache = createLocalCache();
  const beforeClear = cache.epoch;
  cache.clear();
  cache.offer("user", "u", c(5), beforeClear);
  assert.equal(cache.get("user", "u"), undefined, "loaded before the clear");
  cache.suspend();
  const whileSuspended = cache.epoch;
  cache.resume();
  cache.offer("user", "u", c(6), whileSuspended);
  assert.equal(
    cache.get("user", "u"),
    undefined,
    "loaded while suspended, offered after the resume",
  );
  cache.offer("user", "u", c(7), cache.epoch);
  assert.deepEqual(cache.get("user", "u"), c(7), "loaded in the current epoch");
});

Deno.test("LocalCache keeps user and group states apart, each at its own newest version", () => {
  const cache = createLocalCache();
  const group = (version: number) => ({ version, lastSeq: version, deleted: [], mentionsAll: [] });
  cache.offer("user", "x", c(5));
  cache.offer("group", "x", group(2));
  cache.offer("group", "x", group(1));
  assert.deepEqual(cache.get("user", "x"), c(5));
  assert.deepEqual(
    cache.get("group", "x"),
    group(2),
    "an older group state never replaces a newer",
  );
  cache.offer("group", "x", group(3));
  assert.deepEqual(cache.get("group", "x"), group(3));
  assert.deepEqual(
    cache.get("user", "x"),
    c(5),
    "a group's version does not touch the user's entry",
  );
  cache.offer("group", "y", group(1));
  assert.equal(cache.size, 3);
});

Deno.test("LocalCache confirm() restarts the clock of the entry at that version only, in the same epoch", () => {
  let t = 0;
  const cache = createLocalCache({ ttlMs: 100, now: () => t });
  cache.offer("user", "u", c(2));
  const held = cache.get("user", "u");
  t = 90;
  assert.equal(cache.confirm("user", "u", 1, cache.epoch), false, "another version");
  assert.equal(cache.confirm("user", "other", 2, cache.epoch), false, "no entry");
  assert.equal(cache.confirm("user", "u", 2, cache.epoch - 1), false, "an earlier epoch");
  assert.equal(cache.confirm("user", "u", 2, cache.epoch), true);
  t = 180;
  assert.equal(
    cache.get("user", "u"),
    held,
    "served 100 ms past the confirmation, the same object",
  );
  t = 191;
  assert.equal(cache.get("user", "u"), undefined, "then it expires");
});

Deno.test("getAll() gives every state in order, or undefined when any is missing or expired", () => {
  let clock = 0;
  const cache = createLocalCache({ ttlMs: 100, now: () => clock });
  cache.offer("group", "a", { version: 1 } as never);
  cache.offer("group", "b", { version: 2 } as never);
  assert.deepEqual(cache.getAll("group", ["b", "a"])?.map((s) => s.version), [2, 1]);
  assert.equal(cache.getAll("group", ["a", "c"]), undefined);
  clock = 50;
  cache.offer("group", "a", { version: 3 } as never);
  clock = 120;
  assert.equal(cache.getAll("group", ["a", "b"]), undefined, "b expired");
  assert.deepEqual(cache.getAll("group", ["a"])?.map((s) => s.version), [3]);
  assert.deepEqual(cache.getAll("group", []), []);
});

Deno.test("LocalCache reportReadEntries() reports an entry read before refreshAfterMs once it is older, never an unread one, and drops the expired", () => {
  let t = 0;
  const cache = createLocalCache({ ttlMs: 100, refreshAfterMs: 50, now: () => t });
  const due: string[] = [];
  const left: number[] = [];
  cache.onRefreshDue((_kind, id, msLeft) => {
    due.push(id);
    left.push(msLeft);
  });
  cache.offer("user", "read", c(1));
  cache.offer("user", "unread", c(1));
  cache.offer("group", "g", c(1));
  t = 10;
  cache.offer("user", "young", c(1));
  t = 40;
  cache.get("user", "read");
  cache.get("user", "young");
  cache.getAll("group", ["g"]);
  cache.reportReadEntries();
  assert.deepEqual(due, [], "none is old enough yet");
  t = 51;
  cache.reportReadEntries();
  assert.deepEqual(due, ["read", "g"], "read before it was due, reported as it comes of age");
  assert.deepEqual(left, [49, 49], "with the time it has left before it expires");
  cache.reportReadEntries();
  cache.get("user", "read");
  assert.deepEqual(due, ["read", "g"], "once");
  t = 61;
  cache.reportReadEntries();
  assert.deepEqual(due, ["read", "g", "young"]);
  assert.ok(cache.confirm("user", "read", 1, cache.epoch));
  t = 101;
  cache.reportReadEntries();
  assert.equal(cache.size, 2, "the unread entry and the unconfirmed group expired: dropped");
  cache.get("user", "read"); // confirmed at 61, read again before its refresh age
  t = 112;
  cache.reportReadEntries();
  assert.deepEqual(due, ["read", "g", "young", "read"], "met again after its confirmation");
});

Deno.test("LocalCache reports each read entry once per storing and drops the expired, as a full scan would", () => {
  // Random stores, confirmations, reads and reports, checked against a scan of every entry.
  let t = 0;
  let seed = 7;
  const random = () => (seed = (seed * 16807) % 2147483647) / 2147483647;
  const cache = createLocalCache({ ttlMs: 100, refreshAfterMs: 50, maxEntries: 40, now: () => t });
  const reports: string[] = [];
  cache.onRefreshDue((_kind, id) => reports.push(id));
  type Model = { version: number; storedAt: number; read: boolean; reported: boolean };
  const model = new Map<string, Model>();
  const expected: string[] = [];
  const store = (id: string, version: number) => {
    model.delete(id);
    model.set(id, { version, storedAt: t, read: false, reported: false });
  };
  for (let step = 0; step < 20_000; step++) {
    t += Math.floor(random() * 4);
    const id = `u${Math.floor(random() * 50)}`;
    const held = model.get(id);
    const action = random();
    if (action < 0.1) {
      const version = (held?.version ?? 0) + 1;
      cache.offer("user", id, c(version));
      store(id, version);
      if (model.size > 40) model.delete(model.keys().next().value!);
    } else if (action < 0.2) {
      assert.equal(cache.confirm("user", id, held?.version ?? 1, cache.epoch), held !== undefined);
      if (held) store(id, held.version);
    } else if (action < 0.9) {
      const alive = held !== undefined && t - held.storedAt <= 100;
      assert.equal(
        cache.get("user", id)?.version,
        alive ? held.version : undefined,
        `${id} at ${t}`,
      );
      if (!alive) model.delete(id);
      else {
        held.read = true;
        if (t - held.storedAt > 50 && !held.reported) {
          held.reported = true;
          expected.push(id);
        }
      }
    } else {
      cache.reportReadEntries();
      for (const [key, m] of model) {
        if (t - m.storedAt > 100) model.delete(key);
        else if (t - m.storedAt > 50 && m.read && !m.reported) {
          m.reported = true;
          expected.push(key);
        }
      }
      assert.equal(cache.size, model.size, `size at ${t}`);
    }
  }
  assert.ok(expected.length > 100, "entries were reported");
  assert.deepEqual(reports, expected, "the same entries, in the same order");
});

Deno.test("LocalCache update() refreshes an entry this instance loaded, and never makes one served", () => {
  const cache = createLocalCache();
  cache.update("user", "u", c(1));
  assert.equal(cache.get("user", "u"), undefined, "known only from a live update: not served");
  cache.offer("user", "u", c(1), cache.epoch);
  assert.deepEqual(cache.get("user", "u"), c(1), "loaded at that version: served");
  cache.update("user", "u", c(3));
  assert.deepEqual(cache.get("user", "u"), c(3), "a loaded entry is kept current");
  cache.update("user", "u", c(2));
  assert.deepEqual(cache.get("user", "u"), c(3), "never goes back");
  cache.suspend();
  cache.update("user", "u", c(4));
  cache.resume();
  cache.offer("user", "u", c(4), cache.epoch);
  assert.deepEqual(cache.get("user", "u"), c(4));
});

Deno.test("LocalCache never serves a live update loaded before a clear over a newer state missed meanwhile", () => {
  const cache = createLocalCache();
  cache.offer("user", "u", c(5), cache.epoch);
  // A peer loaded version 5; version 6's live update is lost while disconnected.
  cache.suspend();
  cache.resume();
  cache.update("user", "u", c(5));
  assert.equal(cache.get("user", "u"), undefined, "version 5 arrived after the clear");
  const epoch = cache.epoch;
  cache.offer("user", "u", c(6), epoch);
  assert.deepEqual(cache.get("user", "u"), c(6), "the next own load is served");
  cache.clear();
  cache.update("group", "g", c(2));
  cache.clear();
  cache.update("group", "g", c(1));
  assert.equal(cache.get("group", "g"), undefined);
});

Deno.test("LocalCache marks a live update's version for a key not held: an older own load begun before is not kept", () => {
  let t = 0;
  const cache = createLocalCache({ ttlMs: 100, maxEntries: 2, now: () => t });
  const epoch = cache.epoch;
  // A load is in flight when version 7's live update arrives; the load returns version 6.
  cache.update("user", "u", c(7));
  cache.offer("user", "u", c(6), epoch);
  assert.equal(cache.get("user", "u"), undefined, "older than the mark");
  assert.equal(cache.confirm("user", "u", 7, epoch), false, "a mark is never confirmed");
  cache.offer("user", "u", c(7), epoch);
  assert.deepEqual(cache.get("user", "u"), c(7), "a load at the marked version is served");
  // Marks count towards the size and expire as entries do.
  cache.update("user", "a", c(1));
  cache.update("user", "b", c(1));
  assert.equal(cache.size, 2);
  assert.equal(cache.get("user", "u"), undefined, "evicted, least recently stored first");
  t = 101;
  cache.reportReadEntries();
  assert.equal(cache.size, 0, "expired marks are dropped");
});
