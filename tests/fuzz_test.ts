/** Fuzzing both APIs: malformed requests never get a 5xx, stop a service or change state. */
import assert from "node:assert/strict";
import { usersToCheck, verifyCounters, verifyServed } from "../scripts/verify.ts";
import { send } from "../testing/clients.ts";
import { createGroup, groupSend } from "../testing/group_clients.ts";
import { integrationTest, type Service, TEST_JWT_SECRET, waitFor } from "../testing/env.ts";
import { fuzzContext, type FuzzGroup, type FuzzRequest, fuzzRequests } from "../testing/fuzz.ts";
import { testSeed } from "../testing/random.ts";

const COUNT = 10_000;
const CONCURRENCY = 16;
/** How many failures the assertion message lists (FUZZ_SHOW=n for more). */
const SHOW = Number(Deno.env.get("FUZZ_SHOW") ?? 10);
/** What an error body must never contain: stack frames or SQL. */
const LEAK =
  /\.ts:\d+|\bat \S+ \(|\bselect\b.+\bfrom\b|insert into|\bupdate \w+ set\b|delete from/i;

/** The request as it can be replayed by hand; long values are cut. */
function describe(req: FuzzRequest): string {
  const cut = (s: string) => s.length > 300 ? `${s.slice(0, 300)}…(${s.length} chars)` : s;
  const body = req.body === undefined
    ? "(none)"
    : typeof req.body === "string"
    ? JSON.stringify(cut(req.body))
    : `${req.body.length} bytes [${req.body.slice(0, 60).join(",")}${
      req.body.length > 60 ? ",…" : ""
    }]`;
  const headers = Object.entries(req.headers).map(([k, v]) =>
    `\n  ${k}: ${JSON.stringify(cut(v))}`
  );
  return `#${req.index} ${req.service} ${req.method} ${cut(req.path)}${headers.join("")}\n  ` +
    `body ${body} (expected ${req.expect})`;
}

integrationTest(
  "fuzzing: 10,000 random and malformed requests give no 5xx, no crash and no state change " +
    "from a rejected request",
  async (env) => {
    const started = performance.now();
    const seconds = () => ((performance.now() - started) / 1000).toFixed(1);
    const seed = testSeed(20261127);
    const services: Record<FuzzRequest["service"], Service> = {
      dialogs: await env.startDialogs(),
      counters: await env.startCounters(),
    };
    const users = Array.from({ length: 8 }, () => crypto.randomUUID());
    // A few real messages, so ids in paths, `before` and `upTo` sometimes name something.
    const accepted = new Map<string, string>(); // messageId → transactionId
    for (let i = 0; i < 12; i++) {
      const { body } = await send(services.dialogs, users[i % 8]!, users[(i + 3) % 8]!, `m${i}`);
      accepted.set(body.messageId, body.transactionId);
    }
    // Two groups (all eight users; four of them) with a few messages naming members and `all`.
    const groups: FuzzGroup[] = [];
    for (const members of [users, users.slice(2, 6)]) {
      const id = await createGroup(services.dialogs, members[0]!, members.slice(1));
      groups.push({ id, members });
      for (let i = 0; i < 4; i++) {
        const from = members[i % members.length]!;
        const mentions = i % 2 ? ["all"] : [members[(i + 1) % members.length]!];
        const body = await groupSend(services.dialogs, from, id, `g${i}`, mentions);
        accepted.set(body.messageId, body.transactionId);
      }
    }
    const ctx = await fuzzContext(TEST_JWT_SECRET, users, [...accepted.keys()], groups);
    const requests = fuzzRequests(seed, COUNT, ctx);

    const summary = new Map<string, number>(); // "service status" → responses
    const statuses: number[] = [];
    const messageIds: (string | undefined)[] = [];
    const byKey = new Map<string, Set<string>>(); // sender + Idempotency-Key → message ids
    const failures: string[] = [];
    const fail = (req: FuzzRequest, why: string): void => {
      failures.push(`${why}\n${describe(req)}`);
    };

    const check = async (req: FuzzRequest): Promise<void> => {
      let res: Response;
      try {
        res = await fetch(services[req.service].url + req.path, {
          method: req.method,
          headers: req.headers,
          body: req.body as BodyInit | undefined,
          redirect: "manual",
          signal: AbortSignal.timeout(15_000),
        });
      } catch (err) {
        return fail(req, `no response: ${err}`);
      }
      const status = statuses[req.index] = res.status;
      const type = res.headers.get("content-type") ?? "";
      let text = "";
      if (type.startsWith("text/event-stream")) await res.body?.cancel();
      else text = await res.text();
      const tag = `${req.service} ${status}`;
      summary.set(tag, (summary.get(tag) ?? 0) + 1);
      const got = `got ${status} ${type} ${text.slice(0, 300)}`;
      if (status >= 500) return fail(req, `5xx: ${got}`);
      if (!res.headers.get("x-request-id")) fail(req, `no X-Request-ID: ${got}`);
      if (status >= 400) {
        if (!type.startsWith("application/problem+json")) fail(req, `not a problem: ${got}`);
        else if (req.method !== "HEAD") { // HEAD answers carry the headers only
          let p: Record<string, unknown> = {};
          try {
            p = JSON.parse(text);
          } catch { /* reported below */ }
          const fields = ["type", "title", "detail"].every((f) => typeof p[f] === "string");
          if (!fields || p.status !== status) fail(req, `malformed problem: ${got}`);
          if (LEAK.test(text)) fail(req, `a stack trace or SQL in the problem: ${got}`);
        }
      }
      if (req.expect === "rejected" && status < 400) fail(req, `an invalid request ${got}`);
      if (req.expect === "accepted" && status !== 202) fail(req, `a valid send ${got}`);
      if (status !== 202) return;
      const body = JSON.parse(text);
      if (!new URL(req.path, "http://x").pathname.endsWith("/send") || !body.messageId) {
        return fail(req, `202 from something other than a send: ${got}`);
      }
      accepted.set(body.messageId, body.transactionId);
      messageIds[req.index] = body.messageId;
      const key = req.headers["Idempotency-Key"];
      if (!key) return;
      const ids = byKey.get(`${req.user} ${key}`) ?? new Set();
      byKey.set(`${req.user} ${key}`, ids.add(body.messageId));
    };
    const queue = [...requests];
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
      for (let req = queue.shift(); req; req = queue.shift()) await check(req);
    }));
    const fuzzSeconds = seconds();

    // The same send under the same Idempotency-Key: the same answer and at most one message.
    for (const req of requests) {
      const earlier = req.retryOf ?? req.conflictsWith;
      if (earlier === undefined) continue;
      if (req.retryOf !== undefined && statuses[earlier] !== statuses[req.index]) {
        fail(
          req,
          `a retry of #${earlier} got ${statuses[req.index]}, the first ${statuses[earlier]}`,
        );
      }
      if (req.conflictsWith !== undefined && messageIds[req.index] && messageIds[earlier]) {
        fail(req, `another text under the Idempotency-Key of #${earlier} got a message`);
      }
    }
    for (const [key, ids] of byKey) {
      if (ids.size > 1) failures.push(`one Idempotency-Key, ${ids.size} messages: ${key}`);
    }
    let reads = 0;
    try {
      assert.equal(
        failures.length,
        0,
        `${failures.length} failures (seed ${seed}); the first ${SHOW}:\n` +
          failures.slice(0, SHOW).join("\n"),
      );

      // Both services still answer.
      for (const service of Object.values(services)) {
        const res = await fetch(`${service.url}/health/ready`);
        assert.equal(res.status, 200, await res.text());
      }

      // Once quiet: one message row per accepted send and nothing else, every saga finished.
      const dialogsSql = env.sql("dialogs"), countersSql = env.sql("counters");
      await waitFor(async () => {
        const [d] = await dialogsSql`select
          (select count(*)::int from messages where status = 'pending') as pending,
          (select count(*)::int from outbox where sent_at is null) as unsent`;
        const [c] = await countersSql`
          select count(*)::int as unsent from outbox where sent_at is null`;
        return d!.pending + d!.unsent + c!.unsent === 0;
      }, { timeoutMs: 30_000, what: "every saga to finish" });
      const messages = await dialogsSql<
        {
          id: string;
          transaction_id: string;
          status: string;
          text: string;
          read: boolean;
          dialog: boolean;
        }[]
      >`select id, transaction_id, status, text, read_at is not null as read,
               group_id is null as dialog
        from messages`;
      assert.equal(messages.length, accepted.size, "one message row per accepted send");
      for (const m of messages) {
        assert.equal(accepted.get(m.id), m.transaction_id, `message ${m.id} was accepted`);
        assert.ok(["committed", "deleted"].includes(m.status), `message ${m.id} committed`);
        assert.ok(m.text.trim() && [...m.text].length <= 4096 && !m.text.includes("\0"), m.id);
      }

      // The dialogs outbox: one "sent" event per group message (a dialog message is the record of
      // its own, with no outbox row), dialog "read" events that add up, one "deleted" event per
      // deleted message that counted, nothing else.
      const events = await dialogsSql<{ type: string; data: Record<string, unknown> }[]>`
        select payload->>'type' as type, payload->'data' as data from outbox`;
      const sent = [
        ...events.filter((e) => e.type === "dialogs.group.message.sent"),
        ...messages.filter((m) => m.dialog).map((m) => ({
          type: "dialogs.message.sent",
          data: { messageId: m.id, transactionId: m.transaction_id } as Record<string, unknown>,
        })),
      ];
      const outboxSent = sent.length - messages.filter((m) => m.dialog).length;
      const read = events.filter((e) => e.type === "dialogs.messages.read");
      const deletes = events.filter((e) => e.type === "dialogs.message.deleted");
      const others = events.filter((e) =>
        ["dialogs.group.members.changed", "dialogs.dialog.muted", "dialogs.group.message.deleted"]
          .includes(e.type)
      );
      reads = read.length;
      assert.equal(
        outboxSent + read.length + deletes.length + others.length,
        events.length,
        `only the contract's events: ${[...new Set(events.map((e) => e.type))]}`,
      );
      assert.equal(sent.length, accepted.size, "one sent event per accepted send");
      assert.deepEqual(
        new Map(sent.map((e) => [e.data.messageId as string, e.data.transactionId as string])),
        accepted,
      );
      const deletedIds = new Set(deletes.map((e) => e.data.messageId as string));
      assert.equal(
        read.reduce((n, e) => n + (e.data.count as number), 0),
        messages.filter((m) => m.read && !deletedIds.has(m.id)).length,
        "read events count exactly the dialog messages marked read",
      );
      for (const id of deletedIds) {
        assert.equal(messages.find((m) => m.id === id)?.status, "deleted", `${id} deleted`);
      }

      // The counters database: ledger rows and replies only for accepted sends and recorded reads.
      const readTransactions = new Set(
        [...read, ...deletes].map((e) => e.data.transactionId as string),
      );
      const ledger = await countersSql<
        { transaction_id: string; kind: string; message_id: string | null }[]
      >`select transaction_id, kind, message_id from ledger`;
      assert.equal(
        ledger.length,
        accepted.size + read.length + deletes.length,
        "one ledger row per saga",
      );
      for (const row of ledger) {
        if (row.kind === "read" || row.kind === "delete") {
          assert.ok(readTransactions.has(row.transaction_id));
        } else assert.equal(accepted.get(row.message_id!), row.transaction_id, "a send's row");
      }
      const replies = await countersSql<{ transaction_id: string }[]>`
        select payload->'data'->>'transactionId' as transaction_id from outbox`;
      const acceptedTransactions = new Set(accepted.values());
      for (const r of replies) assert.ok(acceptedTransactions.has(r.transaction_id));
      // The invariant, for dialogs and groups, in the tables and as counters serves it.
      let last: unknown;
      await waitFor(async () => {
        const result = await verifyCounters(env.dialogsDatabaseUrl, env.countersDatabaseUrl);
        const served = await verifyServed({
          instances: [services.counters.url],
          secret: TEST_JWT_SECRET,
          truth: result.truth,
          users: [...users, ...usersToCheck(result.truth, result.stored)],
        });
        last = [...result.drift, ...served].slice(0, 10);
        return result.drift.length + served.length === 0;
      }, { what: "no counter drift" }).catch((err) => {
        throw new Error(`${err.message}: ${JSON.stringify(last)}`);
      });
    } finally {
      const codes = [...summary].sort(([a], [b]) => a.localeCompare(b));
      console.log(
        `fuzz seed ${seed}: ${COUNT} requests in ${fuzzSeconds} s (${seconds()} s in all), ` +
          `${accepted.size} messages, ${reads} reads; ${
            codes.map(([k, n]) => `${k}×${n}`).join(", ")
          }`,
      );
    }
  },
);
