/**
 * Reconciliation: every counter must equal the sum of its ledger deltas (sends, cancels, reads and
 * dialog deletes). Pairs where it does not are repaired under the user's lock, so a saga in flight
 * is never overwritten (docs/architecture.md). Group sends are not dialog counters: their entries
 * (sender, group, delta 0) are left out.
 */
import { pipelinedTransaction, type Sql } from "../shared/db.ts";
import type { Drift } from "./drift.ts";
import { addToCounters, bumpVersions, lockUsers } from "./counter_store.ts";

/** Pairs whose counter differs from their ledger, read in one snapshot. */
export async function findLedgerDrift(sql: Sql, limit = 1_000): Promise<Drift[]> {
  const rows = await sql<Drift[]>`
    select coalesce(c.user_id, l.user_id) as "userId", coalesce(c.peer_id, l.peer_id) as "peerId",
           greatest(0, coalesce(l.expected, 0))::int as expected, coalesce(c.unread, 0) as actual
    from unread_counters c
    full join (select user_id, peer_id, sum(delta) as expected from ledger
               where kind <> 'group_send' group by user_id, peer_id) l
      on l.user_id = c.user_id and l.peer_id = c.peer_id
    where coalesce(c.unread, 0) <> greatest(0, coalesce(l.expected, 0))
    limit ${limit}`;
  return [...rows];
}

/** Re-checks one pair under the user's lock and sets it to its ledger sum; returns the repair or null. */
export async function repairPair(sql: Sql, userId: string, peerId: string): Promise<Drift | null> {
  return await pipelinedTransaction(sql, async (tx, withCommit) => {
    const [, [row]] = await Promise.all([
      lockUsers(tx, [userId]),
      tx<{ expected: number; actual: number }[]>`
      select
        greatest(0, coalesce((select sum(delta) from ledger
                              where user_id = ${userId} and peer_id = ${peerId}
                                and kind <> 'group_send'), 0))::int as expected,
        coalesce((select unread from unread_counters
                  where user_id = ${userId} and peer_id = ${peerId}), 0) as actual`,
    ]);
    if (row!.expected === row!.actual) return null;
    // Under the lock `actual` is what the counter holds, so adding the difference sets it.
    withCommit(addToCounters(tx, [{ userId, peerId, delta: row!.expected - row!.actual }]));
    withCommit(bumpVersions(tx, [userId]));
    return { userId, peerId, expected: row!.expected, actual: row!.actual };
  });
}

/** Finds and repairs drift; returns what it repaired. */
export async function reconcileOnce(sql: Sql): Promise<Drift[]> {
  const repaired: Drift[] = [];
  for (const d of await findLedgerDrift(sql)) {
    const r = await repairPair(sql, d.userId, d.peerId);
    if (r) repaired.push(r);
  }
  return repaired;
}
