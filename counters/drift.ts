/** Drift between the counters and the truth in the dialogs database. Pure. */

/** One (user, peer) count. */
export interface PairCount {
  userId: string;
  peerId: string;
  unread: number;
}

/** A pair whose counter differs from the truth. */
export interface Drift {
  userId: string;
  peerId: string;
  expected: number;
  actual: number;
}

/** Every pair where `actual` differs from `expected`; a missing pair counts as 0. */
export function findDrift(expected: PairCount[], actual: PairCount[]): Drift[] {
  const key = (p: PairCount) => `${p.userId}/${p.peerId}`;
  const pairs = new Map<string, Drift>();
  for (const p of expected) {
    pairs.set(key(p), { userId: p.userId, peerId: p.peerId, expected: p.unread, actual: 0 });
  }
  for (const p of actual) {
    const d = pairs.get(key(p));
    if (d) d.actual = p.unread;
    else pairs.set(key(p), { userId: p.userId, peerId: p.peerId, expected: 0, actual: p.unread });
  }
  return [...pairs.values()]
    .filter((d) => d.expected !== d.actual)
    .sort((a, b) => a.userId.localeCompare(b.userId) || a.peerId.localeCompare(b.peerId));
}
