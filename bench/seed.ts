/** Benchmark data: counters for 10,000 users, and 1,000,000 messages in the dialogs database. */
import type { Sql } from "../shared/db.ts";

/** Users whose counters and messages the benchmark reads. */
export interface BenchUsers {
  /** Users with a few unread messages from each of five peers. */
  light: string[];
  /** Users with 10,000 unread messages from one peer. */
  heavy: string[];
  peers: string[];
}

/** Makes the user ids. */
export function benchUsers(light = 10_000, heavy = 20): BenchUsers {
  const ids = (n: number) => Array.from({ length: n }, () => crypto.randomUUID());
  return { light: ids(light), heavy: ids(heavy), peers: ids(5) };
}

/** Each light user: 5 peers with 1–9 unread; each heavy user: 10,000 from the first peer. */
export async function seedCounters(sql: Sql, users: BenchUsers): Promise<void> {
  await sql`
    insert into unread_counters (user_id, peer_id, unread)
    select u, p, 1 + (abs(hashtext(u::text || p::text)) % 9)
    from unnest(${users.light}::uuid[]) u, unnest(${users.peers}::uuid[]) p`;
  await sql`
    insert into unread_counters (user_id, peer_id, unread)
    select u, ${users.peers[0]!}::uuid, 10000 from unnest(${users.heavy}::uuid[]) u`;
  await sql`
    insert into counter_versions (user_id, version)
    select u, 1 from unnest(${[...users.light, ...users.heavy]}::uuid[]) u`;
}

/** 1,000,000 committed messages: 10,000 unread for each heavy user, the rest over the light users. */
export async function seedMessages(sql: Sql, users: BenchUsers, total = 1_000_000): Promise<void> {
  const heavyRows = users.heavy.length * 10_000;
  await sql`
    insert into messages (id, transaction_id, sender_id, recipient_id, text, status, created_at,
                          finished_at)
    select gen_random_uuid(), gen_random_uuid(), ${users.peers[0]!}::uuid,
           (${users.heavy}::uuid[])[1 + g % ${users.heavy.length}], 'bench', 'committed',
           now() - g * interval '1 millisecond', now()
    from generate_series(0, ${heavyRows - 1}) g`;
  // Half of the light users' messages are read, so their counts stay small.
  await sql`
    insert into messages (id, transaction_id, sender_id, recipient_id, text, status, created_at,
                          finished_at, read_at)
    select gen_random_uuid(), gen_random_uuid(), (${users.peers}::uuid[])[1 + g % 5],
           (${users.light}::uuid[])[1 + (g / 5) % ${users.light.length}], 'bench', 'committed',
           now() - g * interval '1 millisecond', now(),
           case when g % 2 = 0 then now() end
    from generate_series(0, ${total - heavyRows - 1}) g`;
  await sql`analyze messages`;
}
