/** The shape of a user's counters and the pure functions that read it. */

/** A user's unread counts per peer with the version of the last change. */
export interface UserCounters {
  version: number;
  dialogs: Record<string, number>;
}

/** The body of `GET /api/counters`: the total and the non-zero counts per peer. */
export function countersBody(counters: UserCounters): {
  total: number;
  dialogs: Record<string, number>;
} {
  const dialogs: Record<string, number> = {};
  let total = 0;
  for (const [peer, n] of Object.entries(counters.dialogs)) {
    if (n <= 0) continue;
    dialogs[peer] = n;
    total += n;
  }
  return { total, dialogs };
}

// Counters are never changed once made (a change makes a new version), so each one's body is
// serialised once, however many reads serve it.
const bodies = new WeakMap<UserCounters, string>();

/** countersBody() as JSON, made once per counters object. */
export function countersJson(counters: UserCounters): string {
  let json = bodies.get(counters);
  if (json === undefined) {
    json = JSON.stringify(countersBody(counters));
    bodies.set(counters, json);
  }
  return json;
}

/** The unread count for one peer (0 when there is none). */
export function unreadFor(counters: UserCounters, peerId: string): number {
  return Math.max(0, counters.dialogs[peerId.toLowerCase()] ?? 0);
}
