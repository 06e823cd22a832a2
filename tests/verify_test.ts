/** `deno task verify` against real databases: exit 0 without drift, 1 with it. */
import assert from "node:assert/strict";
import { bearer, call, integrationTest, waitFor } from "../testing/env.ts";

async function runVerify(dialogsUrl: string, countersUrl: string) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["task", "-q", "verify"],
    cwd: new URL("../", import.meta.url).pathname,
    env: { DIALOGS_DATABASE_URL: dialogsUrl, COUNTERS_DATABASE_URL: countersUrl, NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
}

integrationTest(
  "deno task verify exits 0 when counters equal the truth and 1 with the drift printed",
  async (env) => {
    const dialogs = await env.startDialogs();
    await env.startCounters();
    const a = crypto.randomUUID(), b = crypto.randomUUID();
    const sent = await call(`${dialogs.url}/api/dialog/${b}/send`, {
      auth: await bearer(a),
      body: { text: "count me" },
    });
    await waitFor(async () => {
      const r = await call(`${dialogs.url}/api/messages/${sent.body.messageId}`, {
        auth: await bearer(a),
      });
      return r.body.status === "committed";
    });
    const clean = await runVerify(env.dialogsDatabaseUrl, env.countersDatabaseUrl);
    assert.equal(clean.code, 0, clean.stdout + clean.stderr);
    assert.match(clean.stdout, /no drift/);

    await env.sql("counters")`update unread_counters set unread = 5 where user_id = ${b}`;
    const drifted = await runVerify(env.dialogsDatabaseUrl, env.countersDatabaseUrl);
    assert.equal(drifted.code, 1);
    assert.match(drifted.stdout, new RegExp(`${b}\\s+${a}\\s+1\\s+5`));
    assert.match(drifted.stdout, /drift in 1 counter/);
  },
);

Deno.test("deno task verify exits 2 with one line when a database cannot be read", async () => {
  const r = await runVerify(
    "postgres://postgres@127.0.0.1:1/dialogs",
    "postgres://postgres@127.0.0.1:1/counters",
  );
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^verify: cannot read/);
});
