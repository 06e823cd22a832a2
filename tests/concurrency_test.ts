/** Many senders and readers at once: every saga finishes and the invariant holds for every pair. */
import assert from "node:assert/strict";
import { bearer, call, integrationTest, waitFor } from "../testing/env.ts";
import { countersOf } from "../testing/clients.ts";
import { seededRandom, testSeed } from "../testing/random.ts";
import { verifyCounters } from "../scripts/verify.ts";

integrationTest(
  "concurrency: random concurrent sends and reads end with every counter equal to the truth",
  async (env) => {
    const seed = testSeed(20261125);
    const random = seededRandom(seed);
    const pick = <T>(items: T[]) => items[Math.floor(random() * items.length)]!;
    const dialogs = await env.startDialogs();
    // Two counters instances share the durable consumer, as in production.
    const countersA = await env.startCounters();
    const countersB = await env.startCounters();
    const users = Array.from({ length: 6 }, () => crypto.randomUUID());
    const auth = new Map(await Promise.all(users.map(async (u) => [u, await bearer(u)] as const)));
    const sentTo = new Map<string, string[]>(); // "reader/peer" → message ids sent to reader by peer

    const operations = Array.from({ length: 240 }, () => {
      const from = pick(users);
      const to = pick(users.filter((u) => u !== from));
      return { kind: random() < 0.7 ? "send" : "read", from, to, upTo: random() < 0.5 };
    });
    let accepted = 0, reads = 0;
    const run = async (op: (typeof operations)[number]) => {
      if (op.kind === "send") {
        const r = await call(`${dialogs.url}/api/dialog/${op.to}/send`, {
          auth: auth.get(op.from),
          body: { text: "x" },
        });
        assert.equal(r.status, 202);
        accepted++;
        const key = `${op.to}/${op.from}`;
        sentTo.set(key, [...(sentTo.get(key) ?? []), r.body.messageId]);
        return;
      }
      // A reader reads the dialog with `to` as peer: everything, or up to one of its messages.
      const ids = sentTo.get(`${op.from}/${op.to}`) ?? [];
      const upTo = op.upTo && ids.length ? pick(ids) : undefined;
      const r = await call(`${dialogs.url}/api/dialog/${op.to}/read`, {
        method: "POST",
        auth: auth.get(op.from),
        ...(upTo ? { body: { upTo } } : {}),
      });
      // upTo may name a message still pending, which the reader may not see yet.
      assert.ok(r.status === 200 || (upTo && r.status === 404), `read: ${r.status}`);
      reads++;
    };
    const queue = [...operations];
    await Promise.all(Array.from({ length: 12 }, async () => {
      for (let op = queue.shift(); op; op = queue.shift()) await run(op);
    }));

    await waitFor(
      async () =>
        (await env.sql("dialogs")`select 1 from messages where status = 'pending'`).length === 0,
      {
        timeoutMs: 30_000,
        what: `every saga to finish (seed ${seed})`,
      },
    );
    const statuses = await env.sql(
      "dialogs",
    )`select status, count(*)::int as n from messages group by status`;
    assert.deepEqual(
      statuses.map((s) => s.status),
      ["committed"],
      `every send committed (seed ${seed})`,
    );
    assert.equal(statuses[0]!.n, accepted);
    assert.ok(reads > 30);

    const truth = await env.sql("dialogs")<{ user_id: string; peer_id: string; n: number }[]>`
    select recipient_id as user_id, sender_id as peer_id, count(*)::int as n from messages
    where status = 'committed' and read_at is null group by 1, 2`;
    await waitFor(
      async () =>
        (await verifyCounters(env.dialogsDatabaseUrl, env.countersDatabaseUrl)).drift.length === 0,
      {
        what: `no drift in Postgres (seed ${seed})`,
      },
    );
    for (const user of users) {
      const expected = Object.fromEntries(
        truth.filter((t) => t.user_id === user).map((t) => [t.peer_id, t.n]),
      );
      for (const service of [countersA, countersB]) {
        assert.deepEqual(
          (await countersOf(service, user)).dialogs,
          expected,
          `counters of ${user} (seed ${seed})`,
        );
      }
    }
  },
);
