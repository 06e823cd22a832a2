/** Contract promise 2: the moment a message reads committed, the recipient's counters include it. */
import assert from "node:assert/strict";
import { bearer, call, integrationTest } from "../testing/env.ts";
import { countersOf, send } from "../testing/clients.ts";

integrationTest(
  "read-your-saga: at the moment of commit, Redis and the API already count the message",
  async (env) => {
    const dialogs = await env.startDialogs();
    const counters = await env.startCounters();
    const a = crypto.randomUUID(), b = crypto.randomUUID();
    const auth = await bearer(a);
    for (let i = 1; i <= 10; i++) {
      const sent = await send(dialogs, a, b, `m${i}`);
      // Poll as tightly as possible and check at the first sight of "committed".
      for (;;) {
        const r = await call(`${dialogs.url}/api/messages/${sent.body.messageId}`, { auth });
        if (r.body.status === "committed") break;
        assert.equal(r.body.status, "pending");
      }
      const cached = await env.cachedEntry(b);
      assert.ok(cached, "the recipient's counters are in Redis");
      assert.equal(
        JSON.parse(cached.slice(cached.indexOf("|") + 1)).dialogs[a],
        i,
        `Redis counts message ${i}`,
      );
      assert.equal((await countersOf(counters, b)).dialogs[a], i, `the API counts message ${i}`);
    }
  },
);
