/**
 * `deno task dlq list` prints the dead letters; `deno task dlq replay <seq>` or `replay --all`
 * publishes them again on their original subjects (after you fixed what made them fail).
 * Reads NATS_URL, NATS_STREAM and NATS_SUBJECT_PREFIX like the services (NATS_STREAM unset: the
 * stream derived from the prefix, e.g. SAGA_DLQ for `saga`).
 */
import { commonEnv, ConfigError, parseEnv } from "../shared/config.ts";
import { listDeadLetters, replayDeadLetter } from "../shared/dead_letters.ts";
import { connectNats, streamNames } from "../shared/jetstream.ts";

const USAGE = "usage: deno task dlq list | replay <seq> | replay --all";

const [command, arg] = Deno.args;
if (command !== "list" && command !== "replay") {
  console.error(USAGE);
  Deno.exit(2);
}
if (command === "replay" && arg !== "--all" && !/^[1-9][0-9]*$/.test(arg ?? "")) {
  console.error(`dlq: replay needs a sequence number or --all\n${USAGE}`);
  Deno.exit(2);
}
let env, names;
try {
  const { NATS_URL, NATS_STREAM, NATS_SUBJECT_PREFIX } = commonEnv;
  env = parseEnv({ NATS_URL, NATS_STREAM, NATS_SUBJECT_PREFIX }, Deno.env.toObject());
  names = streamNames(env.NATS_STREAM, env.NATS_SUBJECT_PREFIX);
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  console.error(`dlq: ${err.message}`);
  Deno.exit(2);
}
let nc;
try {
  nc = await connectNats(env.NATS_URL, "dlq");
} catch (err) {
  console.error(`dlq: cannot connect to ${env.NATS_URL}: ${(err as Error).message}`);
  Deno.exit(2);
}
try {
  const letters = await listDeadLetters(nc, names);
  if (command === "list") {
    for (const l of letters) {
      console.log(
        JSON.stringify({
          seq: l.seq,
          time: l.time,
          subject: l.subject,
          reason: l.reason,
          origin: l.origin,
          requestId: l.requestId,
          data: l.data.length > 500 ? `${l.data.slice(0, 500)}…` : l.data,
        }),
      );
    }
    console.log(`dlq: ${letters.length} dead letter(s) in ${names.deadLetterStream}`);
  } else {
    const seqs = arg === "--all" ? letters.map((l) => l.seq) : [Number(arg)];
    let replayed = 0;
    for (const seq of seqs) {
      if (await replayDeadLetter(nc, names, seq)) replayed++;
      else console.error(`dlq: no dead letter ${seq} in ${names.deadLetterStream}`);
    }
    console.log(`dlq: replayed ${replayed} of ${seqs.length}`);
    if (replayed < seqs.length) Deno.exitCode = 1;
  }
} finally {
  await nc.close();
}
