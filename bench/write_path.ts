/** The write path: Postgres' single-transaction ceiling (pgbench) and sends through the whole saga (wrk). */
import type { Sql } from "../shared/db.ts";
import { runWrkSends, type WrkResult } from "./wrk.ts";

/** pgbench's tps for one transaction of an insert and an upsert, the shape of a send and its count. */
export async function pgbenchCeiling(
  databaseUrl: string,
  options: { clients: number; seconds: number },
): Promise<number> {
  const dir = await Deno.makeTempDir({ prefix: "pgbench-" });
  try {
    const script = `${dir}/send.sql`;
    await Deno.writeTextFile(
      script,
      `\\set u random(1, 10000)
\\set p random(1, 10000)
BEGIN;
INSERT INTO bench_messages (sender, recipient, text) VALUES (:p, :u, 'bench');
INSERT INTO bench_counters (user_id, peer_id, unread) VALUES (:u, :p, 1)
  ON CONFLICT (user_id, peer_id) DO UPDATE SET unread = bench_counters.unread + 1;
END;
`,
    );
    const out = await new Deno.Command("pgbench", {
      args: [
        "-n",
        "-c",
        String(options.clients),
        "-j",
        "2",
        "-T",
        String(options.seconds),
        "-f",
        script,
        databaseUrl,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    const tps = /tps = ([\d.]+)/.exec(text);
    if (out.code !== 0 || !tps) {
      throw new Error(`pgbench failed: ${text}${new TextDecoder().decode(out.stderr)}`);
    }
    return Number(tps[1]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Creates pgbench's two tables in `sql`'s database. */
export async function preparePgbench(sql: Sql): Promise<void> {
  await sql`create table if not exists bench_messages (
    id bigserial primary key, sender int not null, recipient int not null, text text not null,
    created_at timestamptz not null default now())`;
  await sql`create table if not exists bench_counters (
    user_id int not null, peer_id int not null, unread int not null,
    primary key (user_id, peer_id))`;
}

/**
 * Sends from 2,000 users to other users through wrk for `seconds`: as fast as `connections` go, or
 * spread out at about `rate` per second. A rate is offered as steady arrivals (each connection
 * pauses a random time between sends), not as a burst at the start of every second.
 */
export function sendLoad(
  dialogsUrl: string,
  users: string[],
  tokens: Map<string, string>,
  options: { connections: number; seconds: number; rate?: number },
): Promise<WrkResult> {
  const senders = users.map((from, i) => {
    let peer = users[(i * 104_729 + 1) % users.length]!;
    if (peer === from) peer = users[(i + 1) % users.length]!;
    return { token: tokens.get(from)!, path: `/api/dialog/${peer}/send` };
  });
  return runWrkSends(dialogsUrl, {
    connections: options.connections,
    seconds: options.seconds,
    senders,
    ...(options.rate ? { meanDelayMs: (options.connections * 1000) / options.rate } : {}),
  });
}

/** Waits until no send is pending; returns saga throughput and send→terminal latency percentiles. */
export async function sagaFigures(
  sql: Sql,
  since: Date,
  timeoutMs = 120_000,
): Promise<{ count: number; perSecond: number; p50Ms: number; p99Ms: number; failed: number }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const [row] = await sql`select count(*)::int as n from messages where status = 'pending'`;
    if (row!.n === 0) break;
    if (Date.now() > deadline) throw new Error(`${row!.n} sends still pending`);
    await new Promise((r) => setTimeout(r, 200));
  }
  const [f] = await sql<
    { count: number; failed: number; seconds: number; p50: number; p99: number }[]
  >`
    select count(*)::int as count,
           count(*) filter (where status = 'failed')::int as failed,
           extract(epoch from max(finished_at) - min(created_at))::float8 as seconds,
           percentile_cont(0.5) within group (order by extract(epoch from finished_at - created_at))
             * 1000 as p50,
           percentile_cont(0.99) within group (order by extract(epoch from finished_at - created_at))
             * 1000 as p99
    from messages where created_at >= ${since}`;
  return {
    count: f!.count,
    failed: f!.failed,
    perSecond: f!.count / Math.max(f!.seconds, 0.001),
    p50Ms: Number(f!.p50),
    p99Ms: Number(f!.p99),
  };
}

/**
 * One send from each of `users` (to the next user), 32 at a time: every token is then verified
 * and remembered, as it is for a user who has sent before, so a measured send run pays for no
 * first-time token check (an HMAC, about 5% of dialogs' CPU in a cold run).
 */
export async function warmTokens(
  baseUrl: string,
  users: string[],
  tokens: Map<string, string>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < users.length) {
      const i = next++;
      const res = await fetch(`${baseUrl}/api/dialog/${users[(i + 1) % users.length]}/send`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${tokens.get(users[i]!)}`,
          "content-type": "application/json",
        },
        body: '{"text":"warm"}',
      });
      await res.body?.cancel();
      if (res.status !== 202) throw new Error(`warming ${baseUrl}: a send answered ${res.status}`);
    }
  };
  await Promise.all(Array.from({ length: 32 }, worker));
}
