/** `deno task verify` against real databases: exit 0 without drift, 1 with it. */
import assert from "node:assert/strict";
import { openRedisCache } from "../counters/redis_cache.ts";
import {
  integrationTest,
  migratedDatabase,
  type Service,
  TEST_JWT_SECRET,
  waitFor,
} from "../testing/env.ts";
import { send, waitForStatus } from "../testing/clients.ts";
import {
  addMembers,
  createGroup,
  deleteMessage,
  groupRead,
  groupSend,
  mute,
} from "../testing/group_clients.ts";
import {
  compareCounts,
  compareServed,
  type Counts,
  expectedBodies,
  type MemberCount,
  readStored,
  readTruth,
} from "../scripts/verify.ts";
import { groupCount, type GroupCounters } from "../counters/counters.ts";
import { seededRandom, testSeed } from "../testing/random.ts";

/** Sends a message from `a` to `b` and waits until it is committed. */
async function sendCommitted(dialogs: Service, a: string, b: string) {
  const sent = await send(dialogs, a, b, "count me");
  await waitForStatus(dialogs, a, sent.body.messageId, "committed");
}

async function runVerify(
  dialogsUrl: string,
  countersUrl: string,
  extra: Record<string, string> = {},
) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["task", "-q", "verify"],
    cwd: new URL("../", import.meta.url).pathname,
    env: {
      DIALOGS_DATABASE_URL: dialogsUrl,
      COUNTERS_DATABASE_URL: countersUrl,
      NO_COLOR: "1",
      ...extra,
    },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
}

integrationTest(
  "deno task verify exits 0 when counters equal the truth and 1 with the drift printed",
  async (env) => {
    const dialogs = await env.startDialogs();
    await env.startCounters();
    const a = crypto.randomUUID(), b = crypto.randomUUID();
    await sendCommitted(dialogs, a, b);
    const clean = await runVerify(env.dialogsDatabaseUrl, env.countersDatabaseUrl);
    assert.equal(clean.code, 0, clean.stdout + clean.stderr);
    assert.match(clean.stdout, /no drift/);

    await env.sql("counters")`update unread_counters set unread = 5 where user_id = ${b}`;
    const drifted = await runVerify(env.dialogsDatabaseUrl, env.countersDatabaseUrl);
    assert.equal(drifted.code, 1);
    assert.match(drifted.stdout, new RegExp(`${b}\\s+${a}\\s+1\\s+5`));
    assert.match(drifted.stdout, /drift in 1 counter/);
  },
);

Deno.test("deno task verify exits 2 with one line when a database cannot be read", async () => {
  const r = await runVerify(
    "postgres://postgres@127.0.0.1:1/dialogs",
    "postgres://postgres@127.0.0.1:1/counters",
  );
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^verify: cannot read/);
});

integrationTest(
  "deno task verify with COUNTERS_URLS reports each count an instance serves wrong, and none on a correct system",
  async (env) => {
    const dialogs = await env.startDialogs();
    const first = await env.startCounters();
    const a = crypto.randomUUID(), b = crypto.randomUUID();
    await sendCommitted(dialogs, a, b);
    const secret = { JWT_SECRET: TEST_JWT_SECRET };
    const clean = await runVerify(env.dialogsDatabaseUrl, env.countersDatabaseUrl, {
      ...secret,
      COUNTERS_URLS: first.url,
    });
    assert.equal(clean.code, 0, clean.stdout + clean.stderr);
    assert.match(clean.stdout, /no drift .*served counters of 2 users on 1 instance/);

    // A Redis entry newer than anything counters wrote, with a count the truth does not have; an
    // instance started now has nothing in process and serves it.
    const cache = openRedisCache({ url: env.redisUrl, keyPrefix: env.redisPrefix });
    try {
      // Written in the generation counters confirmed, as a Redis that lies would hold it.
      const stamp = await waitFor(() => env.redis().get(`${env.redisPrefix}generation`), {
        what: "a cache generation",
      });
      assert.deepEqual(
        await cache.setManyIfNewer(stamp, [{
          key: `user:${b}`,
          state: { version: 1e12, dialogs: { [a]: 7 } },
        }]),
        [true],
      );
    } finally {
      await cache.close();
    }
    const second = await env.startCounters();
    const lied = await runVerify(env.dialogsDatabaseUrl, env.countersDatabaseUrl, {
      ...secret,
      COUNTERS_URLS: `${first.url},${second.url}/`,
    });
    assert.equal(lied.code, 1, lied.stdout + lied.stderr);
    assert.match(lied.stdout, new RegExp(`${second.url}\\s+${b}\\s+${a}\\s+1\\s+7`));
    assert.doesNotMatch(lied.stdout, /drift in \d+ counter/, "the tables are right");
    assert.match(lied.stdout, /served count\(s\) differ from the truth/);
  },
);

integrationTest(
  "deno task verify exits 2 with one line when an instance in COUNTERS_URLS cannot be read or is no URL",
  async (env) => {
    await env.startDialogs();
    await env.startCounters();
    const r = await runVerify(env.dialogsDatabaseUrl, env.countersDatabaseUrl, {
      COUNTERS_URLS: "http://127.0.0.1:1",
    });
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.match(r.stderr, /^verify: cannot read http:\/\/127\.0\.0\.1:1\/api\/counters/);
    const bad = await runVerify(env.dialogsDatabaseUrl, env.countersDatabaseUrl, {
      COUNTERS_URLS: "ftp://x",
    });
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^verify: invalid environment variable COUNTERS_URLS/);
  },
);

Deno.test("compareCounts() finds nothing when the stored counts equal the truth", () => {
  const truth: Counts = {
    dialogs: [{ userId: "u", peerId: "p", unread: 2 }],
    groups: [{ userId: "u", groupId: "g", unread: 3, mentions: 1, muted: true }],
    dialogMutes: [{ userId: "u", peerId: "p" }],
  };
  assert.deepEqual(compareCounts(truth, structuredClone(truth)), []);
});

Deno.test(
  "compareCounts() reports group unread, mentions, mutes, memberships and dialog mutes that differ",
  () => {
    const truth: Counts = {
      dialogs: [],
      groups: [
        { userId: "u", groupId: "g", unread: 3, mentions: 1, muted: false },
        { userId: "v", groupId: "g", unread: 0, mentions: 0, muted: false },
      ],
      dialogMutes: [{ userId: "u", peerId: "p" }],
    };
    const stored: Counts = {
      dialogs: [],
      groups: [
        { userId: "u", groupId: "g", unread: 4, mentions: 0, muted: true },
        { userId: "w", groupId: "g", unread: 0, mentions: 0, muted: false },
      ],
      dialogMutes: [{ userId: "v", peerId: "p" }],
    };
    const row = (
      userId: string,
      peerId: string,
      what: string,
      expected: number,
      actual: number,
    ) => ({
      userId,
      peerId,
      what,
      expected,
      actual,
    });
    assert.deepEqual(compareCounts(truth, stored), [
      row("u", "g", "mentions", 1, 0),
      row("u", "g", "muted", 0, 1),
      row("u", "g", "unread", 3, 4),
      row("u", "p", "muted", 1, 0),
      row("v", "g", "member", 1, 0),
      row("v", "p", "muted", 0, 1),
      row("w", "g", "member", 0, 1),
    ]);
  },
);

Deno.test(
  "expectedBodies() sums total over conversations not muted and mentions over every group",
  () => {
    const bodies = expectedBodies({
      dialogs: [{ userId: "u", peerId: "p", unread: 2 }, { userId: "u", peerId: "q", unread: 5 }],
      groups: [
        { userId: "u", groupId: "g", unread: 3, mentions: 1, muted: false },
        { userId: "u", groupId: "h", unread: 7, mentions: 2, muted: true },
        { userId: "u", groupId: "k", unread: 0, mentions: 0, muted: false },
      ],
      dialogMutes: [{ userId: "u", peerId: "q" }, { userId: "x", peerId: "u" }],
    });
    assert.deepEqual(bodies.get("u"), {
      total: 2 + 3,
      dialogs: { p: 2, q: 5 },
      groups: { g: { unread: 3, mentions: 1 }, h: { unread: 7, mentions: 2 } },
      mentions: 3,
      muted: ["q", "h"],
    });
    assert.deepEqual(bodies.get("x"), {
      total: 0,
      dialogs: {},
      groups: {},
      mentions: 0,
      muted: ["u"],
    });
  },
);

Deno.test("compareServed() reports every served count, sum and mute that differs", () => {
  const expected = {
    total: 4,
    dialogs: { p: 1 },
    groups: { g: { unread: 3, mentions: 1 } },
    mentions: 1,
    muted: ["q"],
  };
  assert.deepEqual(compareServed("i", "u", expected, structuredClone(expected)), []);
  assert.deepEqual(
    compareServed("i", "u", expected, {
      total: 5,
      dialogs: { p: 1, z: 0 },
      groups: { g: { unread: 4, mentions: 1 } },
      mentions: 1,
      muted: [],
    }).map((d) => `${d.peerId} ${d.what} ${d.expected} ${d.served}`),
    ["g unread 3 4", "q muted 1 0", "total total 4 5"],
  );
  assert.deepEqual(
    compareServed("i", "nobody", undefined, { total: 0, dialogs: {} }),
    [],
    "a user the truth does not know expects empty counters",
  );
});

/** A random world of groups: members with positions, messages in every status, mutes. */
function randomGroupWorld(seed: number) {
  const rnd = seededRandom(seed);
  const pick = <T>(items: T[]) => items[Math.floor(rnd() * items.length)]!;
  const users = Array.from({ length: 30 }, () => crypto.randomUUID());
  const groups = Array.from({ length: 3 }, () => ({
    id: crypto.randomUUID(),
    members: users.filter(() => rnd() < 0.6),
  }));
  type Msg = {
    id: string;
    groupId: string;
    sender: string;
    status: string;
    seq: number | null;
    mentions: string[];
    all: boolean;
    cancelled: boolean;
  };
  const messages: Msg[] = [];
  const lastSeq = new Map<string, number>();
  for (const g of groups) {
    let seq = 0;
    for (let i = 0; i < 40; i++) {
      const status = pick(["committed", "committed", "committed", "deleted", "failed", "pending"]);
      // Some failed sends were counted, then cancelled: counters holds their seq as deleted.
      const cancelled = status === "failed" && rnd() < 0.5;
      const counted = status === "committed" || status === "deleted" || cancelled;
      const sender = pick(g.members);
      const all = rnd() < 0.15;
      const mentions = all ? [] : g.members.filter((u) => u !== sender && rnd() < 0.1);
      messages.push({
        id: crypto.randomUUID(),
        groupId: g.id,
        sender,
        status,
        seq: counted && !cancelled ? ++seq : cancelled ? ++seq : null,
        mentions,
        all,
        cancelled,
      });
    }
    lastSeq.set(g.id, seq);
  }
  const members = groups.flatMap((g) =>
    g.members.map((userId) => ({
      groupId: g.id,
      userId,
      member: rnd() < 0.85,
      joinedSeq: rnd() < 0.5 ? 0 : Math.floor(rnd() * 40),
      readSeq: Math.floor(rnd() * 45),
      muted: rnd() < 0.2,
    }))
  );
  const mutes = users.slice(0, 6).map((u) => ({
    userId: u,
    peerId: pick(users),
    muted: rnd() < 0.7,
  }))
    .filter((m) => m.userId !== m.peerId);
  return { users, groups, messages, members, lastSeq, mutes };
}

integrationTest(
  "readTruth() counts group unread and mentions as the contract says, and readStored() as " +
    "counters' groupCount() composes them, on random worlds",
  async (env) => {
    const dialogs = await migratedDatabase(env.dialogsDatabaseUrl, "dialogs");
    const counters = await migratedDatabase(env.countersDatabaseUrl, "counters");
    try {
      const seed = testSeed(20261201);
      const w = randomGroupWorld(seed);
      for (const g of w.groups) {
        await dialogs`insert into groups (id, title, owner_id) values (${g.id}, 't', ${g
          .members[0]!})`;
        await counters`insert into group_counters (group_id, last_seq, version)
          values (${g.id}, ${w.lastSeq.get(g.id)!}, 1)`;
      }
      for (const m of w.members) {
        const row = {
          group_id: m.groupId,
          user_id: m.userId,
          member: m.member,
          joined_seq: m.joinedSeq,
          read_seq: m.readSeq,
          muted: m.muted,
          version: 1,
        };
        await dialogs`insert into group_members ${dialogs(row)}`;
        await counters`insert into group_members ${counters(row)}`;
      }
      for (const m of w.messages) {
        await dialogs`insert into messages
          (id, transaction_id, sender_id, group_id, text, status, seq, mentions, mentions_all)
          values (${m.id}, ${crypto.randomUUID()}, ${m.sender}, ${m.groupId}, 'x', ${m.status},
            ${m.cancelled ? null : m.seq}, ${m.mentions}::uuid[], ${m.all})`;
        if (m.seq === null) continue;
        await counters`insert into group_messages
          (group_id, seq, message_id, sender_id, mentions_all, deleted)
          values (${m.groupId}, ${m.seq}, ${m.id}, ${m.sender}, ${m.all},
            ${m.status !== "committed"})`;
        for (const u of m.mentions) {
          await counters`insert into group_mentions (user_id, group_id, seq)
            values (${u}, ${m.groupId}, ${m.seq})`;
        }
      }
      for (const m of w.mutes) {
        const row = { user_id: m.userId, peer_id: m.peerId, muted: m.muted, version: 1 };
        await dialogs`insert into dialog_mutes ${dialogs(row)} on conflict do nothing`;
        await counters`insert into dialog_mutes ${counters(row)} on conflict do nothing`;
      }

      // The contract, message by message.
      const expected = w.members.filter((m) => m.member).map((m) => {
        const p = Math.max(m.joinedSeq, m.readSeq);
        const counted = w.messages.filter((x) =>
          x.groupId === m.groupId && x.status === "committed" && x.seq! > p && x.sender !== m.userId
        );
        return {
          userId: m.userId,
          groupId: m.groupId,
          unread: counted.length,
          mentions: counted.filter((x) => x.all || x.mentions.includes(m.userId)).length,
          muted: m.muted,
        };
      });
      const byKey = (a: MemberCount, b: MemberCount) =>
        `${a.userId}/${a.groupId}`.localeCompare(`${b.userId}/${b.groupId}`);
      const truth = await readTruth(dialogs);
      assert.deepEqual([...truth.groups].sort(byKey), expected.sort(byKey), `seed ${seed}`);

      // counters' model, composed by groupCount() from the same rows.
      const composed = w.members.filter((m) => m.member).map((m) => {
        const mine = w.messages.filter((x) => x.groupId === m.groupId && x.seq !== null);
        const live = mine.filter((x) => x.status === "committed");
        const group: GroupCounters = {
          version: 1,
          lastSeq: w.lastSeq.get(m.groupId)!,
          deleted: mine.filter((x) => x.status !== "committed").map((x) => x.seq!),
          mentionsAll: live.filter((x) => x.all).map((x) => x.seq!),
        };
        const p = Math.max(m.joinedSeq, m.readSeq);
        const count = groupCount({
          joinedSeq: m.joinedSeq,
          readSeq: m.readSeq,
          muted: m.muted,
          own: live.filter((x) => x.sender === m.userId && x.seq! > p).map((x) => x.seq!),
          mentions: live.filter((x) => x.mentions.includes(m.userId) && x.seq! > p).map((x) =>
            x.seq!
          ),
        }, group);
        return { userId: m.userId, groupId: m.groupId, ...count, muted: m.muted };
      });
      const stored = await readStored(counters);
      assert.deepEqual([...stored.groups].sort(byKey), composed.sort(byKey), `seed ${seed}`);
      assert.deepEqual(compareCounts(truth, stored), [], "the two models agree");
      assert.deepEqual(
        truth.dialogMutes.map((m) => `${m.userId}/${m.peerId}`).sort(),
        w.mutes.filter((m) => m.muted).map((m) => `${m.userId}/${m.peerId}`).sort(),
      );
    } finally {
      await dialogs.end();
      await counters.end();
    }
  },
);

integrationTest(
  "deno task verify finds no drift after a mixed group and dialog workload, and finds a tampered " +
    "group counter and member position",
  async (env) => {
    const dialogs = await env.startDialogs();
    const counters = await env.startCounters();
    const [a, b, c, d] = Array.from({ length: 4 }, () => crypto.randomUUID()) as [
      string,
      string,
      string,
      string,
    ];
    const group = await createGroup(dialogs, a, [b, c]);
    const sends = [
      await groupSend(dialogs, a, group, "one", [b]),
      await groupSend(dialogs, b, group, "two", ["all"]),
      await groupSend(dialogs, c, group, "three", [a, b, c]),
      await groupSend(dialogs, a, group, "four"),
    ];
    for (const s of sends) await waitForStatus(dialogs, a, s.messageId, "committed");
    await sendCommitted(dialogs, a, b);
    await sendCommitted(dialogs, c, b);
    await groupRead(dialogs, c, group, sends[1]!.messageId);
    assert.equal((await deleteMessage(dialogs, a, sends[3]!.messageId)).status, 200);
    await mute(dialogs, b, "groups", group, true);
    await mute(dialogs, b, "dialog", c, true);
    await addMembers(dialogs, a, group, [d]);
    await groupSend(dialogs, d, group, "five", ["all"]);
    const secret = { JWT_SECRET: TEST_JWT_SECRET, COUNTERS_URLS: counters.url };
    let last = "";
    await waitFor(async () => {
      const r = await runVerify(env.dialogsDatabaseUrl, env.countersDatabaseUrl, secret);
      last = r.stdout + r.stderr;
      return r.code === 0;
    }, { what: "no drift", timeoutMs: 15_000 }).catch((err) => {
      throw new Error(`${err.message}:\n${last}`);
    });
    const clean = await runVerify(env.dialogsDatabaseUrl, env.countersDatabaseUrl, secret);
    assert.match(clean.stdout, /no drift \(2 dialogs with unread messages and 4 group memberships/);

    const sql = env.sql("counters");
    await sql`update group_counters set last_seq = last_seq + 1 where group_id = ${group}`;
    const bumped = await runVerify(env.dialogsDatabaseUrl, env.countersDatabaseUrl);
    assert.equal(bumped.code, 1, bumped.stdout + bumped.stderr);
    for (const member of [a, b, c, d]) {
      assert.match(bumped.stdout, new RegExp(`${member}\\s+${group}\\s+\\d+\\s+\\d+\\s+unread`));
    }
    await sql`update group_counters set last_seq = last_seq - 1 where group_id = ${group}`;
    assert.equal((await runVerify(env.dialogsDatabaseUrl, env.countersDatabaseUrl)).code, 0);

    await sql`update group_members set read_seq = 0 where group_id = ${group} and user_id = ${c}`;
    const moved = await runVerify(env.dialogsDatabaseUrl, env.countersDatabaseUrl);
    assert.equal(moved.code, 1, moved.stdout + moved.stderr);
    assert.match(moved.stdout, new RegExp(`${c}\\s+${group}\\s+1\\s+3\\s+unread`));
    assert.match(moved.stdout, /drift in \d+ counter/);
  },
);
