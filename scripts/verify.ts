/**
 * `deno task verify`: compares every counter with the truth in the dialogs database, prints the drift,
 * exits 0 when there is none and 1 when there is any (2 when a database cannot be read).
 */
import postgres from "postgres";
import { databaseUrl, parseEnv } from "../shared/config.ts";
import { redactUrl } from "../shared/db.ts";
import { findDrift, type PairCount } from "../counters/drift.ts";

/** Reads both databases and returns the drift. */
export async function verifyCounters(dialogsUrl: string, countersUrl: string) {
  const dialogs = postgres(dialogsUrl, { max: 1, onnotice: () => {} });
  const counters = postgres(countersUrl, { max: 1, onnotice: () => {} });
  try {
    const truth = await dialogs<PairCount[]>`
      select recipient_id as "userId", sender_id as "peerId", count(*)::int as unread
      from messages where status = 'committed' and read_at is null
      group by recipient_id, sender_id`;
    const served = await counters<PairCount[]>`
      select user_id as "userId", peer_id as "peerId", unread from unread_counters where unread <> 0`;
    return { drift: findDrift(truth, served), pairs: truth.length };
  } finally {
    await Promise.all([dialogs.end(), counters.end()]);
  }
}

if (import.meta.main) {
  const env = parseEnv({
    DIALOGS_DATABASE_URL: databaseUrl("postgres://postgres@127.0.0.1:5432/dialogs"),
    COUNTERS_DATABASE_URL: databaseUrl("postgres://postgres@127.0.0.1:5432/counters"),
  }, Deno.env.toObject());
  let result;
  try {
    result = await verifyCounters(env.DIALOGS_DATABASE_URL, env.COUNTERS_DATABASE_URL);
  } catch (err) {
    console.error(
      `verify: cannot read ${redactUrl(env.DIALOGS_DATABASE_URL)} and ${
        redactUrl(env.COUNTERS_DATABASE_URL)
      }: ${(err as Error).message}`,
    );
    Deno.exit(2);
  }
  if (result.drift.length === 0) {
    console.log(`verify: no drift (${result.pairs} dialogs with unread messages checked)`);
    Deno.exit(0);
  }
  console.log(
    "user_id                               peer_id                               expected  actual",
  );
  for (const d of result.drift) {
    console.log(
      `${d.userId}  ${d.peerId}  ${String(d.expected).padStart(8)}  ${
        String(d.actual).padStart(6)
      }`,
    );
  }
  console.log(`verify: drift in ${result.drift.length} counter(s)`);
  Deno.exit(1);
}
