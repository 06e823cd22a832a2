/** The write path: Postgres' single-transaction ceiling (pgbench) and sends through the whole saga (autocannon). */
import autocannon from "autocannon";
import type { Sql } from "../shared/db.ts";

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

/** What one autocannon run of sends measured. */
export interface SendLoadResult {
  accepted: number;
  errors: number;
  requestsPerSecond: number;
}

/** Sends from random users to random peers for `seconds`, at `rate` per second if given. */
export async function sendLoad(
  dialogsUrl: string,
  users: string[],
  tokens: Map<string, string>,
  options: { connections: number; seconds: number; rate?: number },
): Promise<SendLoadResult> {
  let n = 0;
  const result = await autocannon({
    url: dialogsUrl,
    connections: options.connections,
    duration: options.seconds,
    ...(options.rate ? { overallRate: options.rate } : {}),
    requests: [{
      method: "POST",
      setupRequest: (req: Record<string, unknown>) => {
        n++;
        const from = users[(n * 7919) % users.length]!;
        const to = users[(n * 104_729 + 1) % users.length]!;
        const peer = to === from ? users[(users.indexOf(to) + 1) % users.length]! : to;
        return {
          ...req,
          path: `/api/dialog/${peer}/send`,
          headers: {
            Authorization: `Bearer ${tokens.get(from)}`,
            "Content-Type": "application/json",
          },
          body: JSON.stringify({ text: "bench" }),
        };
      },
    }],
  });
  return {
    accepted: result["2xx"],
    errors: result.non2xx + result.errors + result.timeouts,
    requestsPerSecond: result.requests.average,
  };
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
