/** Dead letters: a poison event lands in the DLQ with its reason; after a fix, replay applies it once. */
import assert from "node:assert/strict";
import { headers as natsHeaders } from "@nats-io/nats-core";
import { createEvent } from "../shared/events.ts";
import { integrationTest, jetstream, type TestEnv, waitFor } from "../testing/env.ts";
import { statusOf } from "../testing/clients.ts";

async function dlq(env: TestEnv, ...args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["task", "-q", "dlq", ...args],
    cwd: new URL("../", import.meta.url).pathname,
    env: {
      NO_COLOR: "1",
      NATS_URL: env.natsUrl,
      NATS_STREAM: env.stream,
      NATS_SUBJECT_PREFIX: env.prefix,
    },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
}

async function metric(url: string, pattern: RegExp): Promise<number> {
  const text = await fetch(`${url}/metrics`).then((r) => r.text());
  const line = text.split("\n").find((l) => pattern.test(l));
  return line ? Number(line.slice(line.lastIndexOf(" ") + 1)) : 0;
}

integrationTest(
  "dead letters: a poison reply is dead-lettered, counted, listed, and replayed once after the fix",
  async (env) => {
    const dialogs = await env.startDialogs();
    const a = crypto.randomUUID(), b = crypto.randomUUID();
    const messageId = crypto.randomUUID(), transactionId = crypto.randomUUID();
    // A reply for a transaction dialogs does not know (say, its row was lost and is restored later).
    const reply = createEvent("counters.message.counted", {
      transactionId,
      messageId,
      outcome: "counted",
    }, {
      requestId: "trace-poison",
    });
    const h = natsHeaders();
    h.set("X-Request-ID", "trace-poison");
    const nc = await env.nats();
    await jetstream(nc).publish(`${env.prefix}.counters.message.counted`, JSON.stringify(reply), {
      msgID: reply.id,
      headers: h,
    });
    await waitFor(async () => (await metric(dialogs.url, /^saga_dead_letters /)) === 1, {
      what: "the dead letter",
    });
    assert.equal(
      await metric(dialogs.url, /^saga_events_consumed_total\{outcome="dead_lettered"/),
      1,
    );

    const listed = await dlq(env, "list");
    assert.equal(listed.code, 0, listed.stderr);
    const [line] = listed.stdout.trim().split("\n");
    const letter = JSON.parse(line!);
    assert.equal(letter.subject, `${env.prefix}.counters.message.counted`);
    assert.match(letter.reason, new RegExp(`no message has transaction ${transactionId}`));
    assert.equal(letter.requestId, "trace-poison", "the original headers are kept");
    assert.match(listed.stdout, /1 dead letter\(s\)/);

    // The fix: the message row is restored.
    await env.sql("dialogs")`
    insert into messages (id, transaction_id, sender_id, recipient_id, text)
    values (${messageId}, ${transactionId}, ${a}, ${b}, 'restored')`;
    const replayed = await dlq(env, "replay", "--all");
    assert.equal(replayed.code, 0, replayed.stderr);
    assert.match(replayed.stdout, /replayed 1 of 1/);
    await waitFor(async () => (await statusOf(dialogs, a, messageId)) === "committed", {
      what: "committed",
    });
    assert.equal(await metric(dialogs.url, /^saga_outcomes_total\{status="committed"\}/), 1);

    const again = await dlq(env, "replay", String(letter.seq));
    assert.equal(again.code, 1, "a replayed letter is gone");
    assert.match(again.stderr, /no dead letter/);
    assert.match((await dlq(env, "list")).stdout, /0 dead letter\(s\)/);
    assert.equal(
      await metric(dialogs.url, /^saga_outcomes_total\{status="committed"\}/),
      1,
      "applied once",
    );
    assert.equal(await metric(dialogs.url, /^saga_dead_letters /), 0);
  },
);

Deno.test("deno task dlq explains its usage on bad arguments", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["task", "-q", "dlq", "replay", "x"],
    cwd: new URL("../", import.meta.url).pathname,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 2);
  assert.match(new TextDecoder().decode(out.stderr), /usage: deno task dlq/);
});
