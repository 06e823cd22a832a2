/** Reconciliation under traffic: a corrupted counter is repaired and nothing else moves. */
import assert from "node:assert/strict";
import { integrationTest, waitFor } from "../testing/env.ts";
import { countersOf, markRead, send, waitForStatus } from "../testing/clients.ts";
import { verifyCounters } from "../scripts/verify.ts";

integrationTest(
  "reconciliation: a counter corrupted while traffic runs is repaired, and only that one",
  async (env) => {
    const dialogs = await env.startDialogs();
    const counters = await env.startCounters({ overrides: { RECONCILE_INTERVAL_MS: 150 } });
    const users = Array.from({ length: 4 }, () => crypto.randomUUID());
    const [victim, peer] = [users[0]!, users[1]!];
    const first = await send(dialogs, peer, victim, "before");
    await waitForStatus(dialogs, peer, first.body.messageId, "committed");

    let corrupted = false;
    const traffic = (async () => {
      for (let i = 0; i < 40; i++) {
        const from = users[i % 4]!, to = users[(i + 1 + (i % 3)) % 4]!;
        if (from === to) continue;
        await send(dialogs, from, to, `t${i}`);
        if (i % 7 === 0) await markRead(dialogs, to, from);
        if (i === 15) {
          await env.sql("counters")`
          update unread_counters set unread = unread + 7 where user_id = ${victim} and peer_id = ${peer}`;
          corrupted = true;
        }
      }
    })();
    await traffic;
    assert.ok(corrupted);
    await waitFor(
      async () =>
        (await env.sql("dialogs")`select 1 from messages where status = 'pending'`).length === 0,
      {
        what: "every saga to finish",
      },
    );
    await waitFor(
      async () =>
        (await verifyCounters(env.dialogsDatabaseUrl, env.countersDatabaseUrl)).drift.length === 0,
      {
        what: "no drift",
      },
    );
    const repairs = env.logs.filter((l) => l.msg === "counter repaired");
    assert.ok(repairs.length >= 1);
    for (const r of repairs) {
      assert.deepEqual(
        [r.userId, r.peerId],
        [victim, peer],
        "nothing but the corrupted pair moved",
      );
    }
    // The repaired value reached the cache too.
    const { drift } = await verifyCounters(env.dialogsDatabaseUrl, env.countersDatabaseUrl);
    assert.deepEqual(drift, []);
    const [truth] = await env.sql("dialogs")`
    select count(*)::int as n from messages
    where recipient_id = ${victim} and sender_id = ${peer} and status = 'committed' and read_at is null`;
    assert.equal((await countersOf(counters, victim)).dialogs[peer] ?? 0, truth!.n);
  },
);
