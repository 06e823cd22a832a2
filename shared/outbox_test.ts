import assert from "node:assert/strict";
import { jetstream, type JetStreamClient, jetstreamManager } from "@nats-io/jetstream";
import { ensureDatabase, openDatabase } from "./db.ts";
import { ensureStreams, streamNames } from "./jetstream.ts";
import { createLogger } from "./log.ts";
import { migrate, sharedMigrations } from "./migrate.ts";
import {
  enqueueEvent,
  enqueueEvents,
  outboxBacklog,
  OutboxRelay,
  outboxTransaction,
  publishAfterCommit,
} from "./outbox.ts";
import { messageSentEvent } from "../testing/fixtures.ts";
import { integrationTest, type TestEnv, waitFor } from "../testing/env.ts";

async function setup(env: TestEnv) {
  await ensureDatabase(env.dialogsDatabaseUrl);
  const sql = openDatabase(env.dialogsDatabaseUrl);
  await migrate(sql, await sharedMigrations());
  const nc = await env.nats();
  const names = streamNames(env.stream, env.prefix);
  await ensureStreams(nc, names);
  const log = createLogger("test", "debug", env.logSink);
  return { sql, nc, js: jetstream(nc), names, log };
}

integrationTest("enqueueEvent() writes nothing when the transaction rolls back", async (env) => {
  const { sql } = await setup(env);
  try {
    await assert.rejects(sql.begin(async (tx) => {
      await enqueueEvent(tx, messageSentEvent("req-outbox"));
      throw new Error("rollback");
    }));
    assert.equal((await outboxBacklog(sql)).count, 0);
  } finally {
    await sql.end();
  }
});

integrationTest(
  "OutboxRelay publishes with msgID = event id and marks rows sent after the PubAck",
  async (env) => {
    const { sql, nc, js, names, log } = await setup(env);
    const relay = new OutboxRelay({ sql, js, log, prefix: env.prefix, pollIntervalMs: 60_000 });
    try {
      const events = [
        messageSentEvent("req-outbox"),
        messageSentEvent("req-outbox"),
        messageSentEvent("req-outbox"),
      ];
      await relay.start();
      await outboxTransaction(sql, async (tx) => {
        for (const e of events) await enqueueEvent(tx, e);
      });
      // The poll interval is a minute, so only the wake after the commit can have woken the relay.
      await waitFor(async () => (await outboxBacklog(sql)).count === 0, { what: "outbox drained" });
      const jsm = await jetstreamManager(nc);
      const info = await jsm.streams.info(names.stream);
      assert.equal(info.state.messages, 3);
      const stored = (await jsm.streams.getMessage(names.stream, { seq: 1 }))!;
      assert.equal(stored.header.get("Nats-Msg-Id"), events[0]!.id);
      assert.equal(stored.header.get("X-Request-ID"), "req-outbox");
      assert.equal(stored.json<{ id: string }>().id, events[0]!.id);
    } finally {
      await relay.stop();
      await sql.end();
    }
  },
);

integrationTest(
  "OutboxRelay on another pool (another instance) is woken by the NOTIFY after the commit",
  async (env) => {
    const { sql, js, log } = await setup(env);
    const other = openDatabase(env.dialogsDatabaseUrl);
    const relay = new OutboxRelay({
      sql: other,
      js,
      log,
      prefix: env.prefix,
      pollIntervalMs: 60_000,
    });
    try {
      await relay.start();
      await outboxTransaction(sql, async (tx) => {
        await enqueueEvent(tx, messageSentEvent("req-notify"));
      });
      await waitFor(async () => (await outboxBacklog(sql)).count === 0, { what: "outbox drained" });
    } finally {
      await relay.stop();
      await other.end();
      await sql.end();
    }
  },
);

integrationTest(
  "outboxTransaction() sends a NOTIFY only for events no running relay of its pool will publish",
  async (env) => {
    const { js, log } = await setup(env);
    // One connection: the NOTIFY a commit sends goes before the marker sent after it.
    const writer = openDatabase(env.dialogsDatabaseUrl, { max: 1 });
    const listener = openDatabase(env.dialogsDatabaseUrl);
    const heard: string[] = [];
    await listener.listen("outbox", (payload) => heard.push(payload));
    const heardUpTo = async (marker: string) => {
      await writer`select pg_notify('outbox', ${marker})`;
      await waitFor(() => Promise.resolve(heard.includes(marker)), { what: marker });
      return heard.splice(0);
    };
    let refuse = false, refused = 0;
    const relay = new OutboxRelay({
      sql: writer,
      js,
      log,
      prefix: env.prefix,
      pollIntervalMs: 60_000,
      beforePublish: () =>
        refuse ? Promise.reject(new Error(`refused ${++refused}`)) : Promise.resolve(),
    });
    const enqueueOne = () =>
      outboxTransaction(writer, async (tx) => {
        await enqueueEvent(tx, messageSentEvent());
      });
    try {
      await outboxTransaction(writer, async (tx) => {
        await tx`select 1`;
      });
      assert.deepEqual(await heardUpTo("no event"), ["no event"]);
      await enqueueOne();
      assert.deepEqual(await heardUpTo("no relay"), ["", "no relay"]);
      await relay.start();
      await waitFor(async () => (await outboxBacklog(writer)).count === 0, { what: "published" });
      await enqueueOne();
      await waitFor(async () => (await outboxBacklog(writer)).count === 0, { what: "published" });
      assert.deepEqual(await heardUpTo("relay running"), ["relay running"]);
      refuse = true;
      await enqueueOne();
      // The second attempt comes after the first failure was noted.
      await waitFor(() => Promise.resolve(refused >= 2), { what: "a failed batch, retried" });
      await enqueueOne();
      assert.deepEqual(await heardUpTo("relay failing"), ["", "relay failing"]);
      refuse = false;
      await waitFor(async () => (await outboxBacklog(writer)).count === 0, { what: "published" });
    } finally {
      await relay.stop();
      await listener.end();
      await writer.end();
    }
  },
);

integrationTest("enqueueEvents() writes each event once, in one statement", async (env) => {
  const { sql } = await setup(env);
  try {
    const [a, b] = [messageSentEvent("req-many"), messageSentEvent()];
    await enqueueEvents(sql, [a, b, a]);
    const rows = await sql<{ id: string; payload: unknown; request_id: string | null }[]>`
      select id, payload, request_id from outbox order by request_id nulls last`;
    assert.deepEqual(rows.map((r) => [r.id, r.payload, r.request_id]), [
      [a.id, JSON.parse(JSON.stringify(a)), "req-many"],
      [b.id, JSON.parse(JSON.stringify(b)), null],
    ]);
  } finally {
    await sql.end();
  }
});

integrationTest(
  "OutboxRelay: a row published twice is stored once (JetStream drops the duplicate msgID)",
  async (env) => {
    const { sql, nc, js, names, log } = await setup(env);
    try {
      const event = messageSentEvent("req-outbox");
      await enqueueEvent(sql, event);
      const relay = new OutboxRelay({ sql, js, log, prefix: env.prefix });
      assert.equal(await relay.relayOnce(), 1);
      // As if the process died after the PubAck but before marking the row sent.
      await sql`update outbox set sent_at = null`;
      assert.equal(await relay.relayOnce(), 1);
      const info = await (await jetstreamManager(nc)).streams.info(names.stream);
      assert.equal(info.state.messages, 1);
    } finally {
      await sql.end();
    }
  },
);

integrationTest(
  "OutboxRelay: several relays at once publish every row exactly once",
  async (env) => {
    const { sql, nc, js, names, log } = await setup(env);
    let published = 0;
    const relays = [1, 2, 3].map(() =>
      new OutboxRelay({
        sql,
        js,
        log,
        prefix: env.prefix,
        batchSize: 7,
        pollIntervalMs: 20,
        onPublished: (n) => published += n,
      })
    );
    try {
      for (let i = 0; i < 60; i++) {
        await enqueueEvent(sql, messageSentEvent("req-outbox"));
      }
      await Promise.all(relays.map((r) => r.start()));
      await waitFor(async () => (await outboxBacklog(sql)).count === 0, { what: "outbox drained" });
      const info = await (await jetstreamManager(nc)).streams.info(names.stream);
      assert.equal(info.state.messages, 60);
      assert.equal(published, 60, "no row was published by two relays");
    } finally {
      await Promise.all(relays.map((r) => r.stop()));
      await sql.end();
    }
  },
);

integrationTest(
  "OutboxRelay keeps rows while NATS refuses them and publishes once it accepts",
  async (env) => {
    const { sql, nc, js, names, log } = await setup(env);
    const relay = new OutboxRelay({ sql, js, log, prefix: env.prefix, pollIntervalMs: 20 });
    try {
      const jsm = await jetstreamManager(nc);
      await jsm.streams.delete(names.stream);
      await enqueueEvent(sql, messageSentEvent("req-outbox"));
      await assert.rejects(relay.relayOnce());
      assert.equal((await outboxBacklog(sql)).count, 1, "the row is still unsent");
      await ensureStreams(nc, names);
      assert.equal(await relay.relayOnce(), 1);
      assert.equal((await outboxBacklog(sql)).count, 0);
    } finally {
      await sql.end();
    }
  },
);

integrationTest(
  "OutboxRelay publishes on <prefix>.<type>, and a row written before types on its stored subject",
  async (env) => {
    const { sql, nc, js, names, log } = await setup(env);
    try {
      const typed = messageSentEvent();
      const legacy = messageSentEvent();
      await enqueueEvent(sql, typed);
      // As the outbox stored rows before it kept their type: a subject and no type.
      await sql`
        insert into outbox (id, subject, payload, created_at)
        values (${legacy.id}, ${`${env.prefix}.dialogs.message.sent`}, ${sql.json(legacy as never)},
                now() - interval '1 second')`;
      const [row] = await sql<{ type: string | null; subject: string | null }[]>`
        select type, subject from outbox where id = ${typed.id}`;
      assert.deepEqual(row, { type: "dialogs.message.sent", subject: null });
      const relay = new OutboxRelay({ sql, js, log, prefix: env.prefix });
      assert.equal(await relay.relayOnce(), 2);
      const jsm = await jetstreamManager(nc);
      const first = (await jsm.streams.getMessage(names.stream, { seq: 1 }))!;
      const second = (await jsm.streams.getMessage(names.stream, { seq: 2 }))!;
      assert.deepEqual(
        [[first.subject, first.json<{ id: string }>().id], [
          second.subject,
          second.json<{ id: string }>().id,
        ]],
        [
          [`${env.prefix}.dialogs.message.sent`, legacy.id],
          [`${env.prefix}.dialogs.message.sent`, typed.id],
        ],
      );
    } finally {
      await sql.end();
    }
  },
);

integrationTest(
  "OutboxRelay: rows another relay claimed are not taken while its lease runs",
  async (env) => {
    const { sql, nc, js, names, log } = await setup(env);
    try {
      await enqueueEvents(sql, [messageSentEvent(), messageSentEvent()]);
      const first = new OutboxRelay({ sql, js, log, prefix: env.prefix, leaseMs: 60_000 });
      const second = new OutboxRelay({ sql, js, log, prefix: env.prefix });
      assert.equal((await first.claimBatch()).length, 2);
      assert.equal(await second.relayOnce(), 0);
      assert.equal((await second.claimBatch()).length, 0);
      const info = await (await jetstreamManager(nc)).streams.info(names.stream);
      assert.equal(info.state.messages, 0);
      assert.equal((await outboxBacklog(sql)).count, 2, "still unsent, only claimed");
    } finally {
      await sql.end();
    }
  },
);

integrationTest(
  "OutboxRelay: rows of a relay that died after claiming are published by another after the lease",
  async (env) => {
    const { sql, nc, js, names, log } = await setup(env);
    try {
      const events = [messageSentEvent(), messageSentEvent(), messageSentEvent()];
      await enqueueEvents(sql, events);
      // Claims and never publishes, as a relay killed right after its claim committed.
      const dead = new OutboxRelay({ sql, js, log, prefix: env.prefix, leaseMs: 300 });
      assert.equal((await dead.claimBatch()).length, 3);
      const survivor = new OutboxRelay({ sql, js, log, prefix: env.prefix });
      assert.equal(await survivor.relayOnce(), 0, "nothing to take while the lease runs");
      const published = await waitFor(async () => await survivor.relayOnce(), {
        what: "the lease to run out",
      });
      assert.equal(published, 3);
      assert.equal((await outboxBacklog(sql)).count, 0);
      const jsm = await jetstreamManager(nc);
      assert.equal((await jsm.streams.info(names.stream)).state.messages, 3);
      const ids = [];
      for (let seq = 1; seq <= 3; seq++) {
        ids.push((await jsm.streams.getMessage(names.stream, { seq }))!.json<{ id: string }>().id);
      }
      assert.deepEqual(ids, events.map((e) => e.id), "in outbox order");
    } finally {
      await sql.end();
    }
  },
);

integrationTest(
  "OutboxRelay runs beforePublish with no transaction open and the batch's rows unlocked",
  async (env) => {
    const { sql, nc, js, names, log } = await setup(env);
    const other = openDatabase(env.dialogsDatabaseUrl, { max: 1 });
    try {
      const events = [messageSentEvent(), messageSentEvent()];
      await enqueueEvents(sql, events);
      const seen: { inTransaction: number; locked: string[]; published: number }[] = [];
      const relay = new OutboxRelay({
        sql,
        js,
        log,
        prefix: env.prefix,
        beforePublish: async (batch) => {
          const [active] = await other<{ n: number }[]>`
            select count(*)::int as n from pg_stat_activity
            where datname = current_database() and state like 'idle in transaction%'`;
          // NOWAIT fails at once (55P03) should any of the rows be locked by the relay.
          const locked = await other.begin((tx) =>
            tx<{ id: string }[]>`
              select id from outbox where id = any(${batch.map((e) => e.id)}::uuid[])
              order by created_at for update nowait`
          );
          const info = await (await jetstreamManager(nc)).streams.info(names.stream);
          seen.push({
            inTransaction: active!.n,
            locked: locked.map((r) => r.id),
            published: info.state.messages,
          });
        },
      });
      assert.equal(await relay.relayOnce(), 2);
      assert.deepEqual(seen, [{
        inTransaction: 0,
        locked: events.map((e) => e.id),
        published: 0,
      }]);
    } finally {
      await other.end();
      await sql.end();
    }
  },
);

integrationTest(
  "OutboxRelay: a failing beforePublish publishes nothing, and the rows go out on the retry",
  async (env) => {
    const { sql, nc, js, names, log } = await setup(env);
    try {
      await enqueueEvent(sql, messageSentEvent());
      let calls = 0;
      const relay = new OutboxRelay({
        sql,
        js,
        log,
        prefix: env.prefix,
        leaseMs: 60_000,
        beforePublish: () => {
          calls++;
          return calls === 1 ? Promise.reject(new Error("cache unreachable")) : Promise.resolve();
        },
      });
      await assert.rejects(relay.relayOnce(), /cache unreachable/);
      const jsm = await jetstreamManager(nc);
      assert.equal((await jsm.streams.info(names.stream)).state.messages, 0);
      assert.equal((await outboxBacklog(sql)).count, 1);
      // The failed batch gave its lease back, so the retry need not wait a minute for it.
      assert.equal(await relay.relayOnce(), 1);
      assert.equal(calls, 2);
      assert.equal((await jsm.streams.info(names.stream)).state.messages, 1);
      assert.equal((await outboxBacklog(sql)).count, 0);
    } finally {
      await sql.end();
    }
  },
);

/** An OutboxRelay that counts its claims. */
class CountingRelay extends OutboxRelay {
  claims = 0;
  override claimBatch() {
    this.claims++;
    return super.claimBatch();
  }
}

integrationTest(
  "outboxTransaction() hands its rows to the running relay, which publishes them unclaimed, in order",
  async (env) => {
    const { sql, nc, js, names, log } = await setup(env);
    const relay = new CountingRelay({ sql, js, log, prefix: env.prefix, pollIntervalMs: 60_000 });
    try {
      await relay.start();
      await waitFor(() => relay.claims === 1, { what: "the claim at start" });
      const events = [messageSentEvent(), messageSentEvent(), messageSentEvent()];
      await outboxTransaction(sql, async (tx) => {
        await enqueueEvent(tx, events[0]!);
        await enqueueEvents(tx, events.slice(1));
      });
      await waitFor(async () => (await outboxBacklog(sql)).count === 0, { what: "outbox drained" });
      assert.equal(relay.claims, 1, "published without a claim");
      const jsm = await jetstreamManager(nc);
      const ids = [];
      for (let seq = 1; seq <= 3; seq++) {
        ids.push((await jsm.streams.getMessage(names.stream, { seq }))!.json<{ id: string }>().id);
      }
      assert.deepEqual(ids, events.map((e) => e.id));
      const [row] = await sql<{ unclaimed: number }[]>`
        select count(*)::int as unclaimed from outbox where claimed_until is null`;
      assert.equal(row!.unclaimed, 3, "the sent mark ends the lease");
    } finally {
      await relay.stop();
      await sql.end();
    }
  },
);

integrationTest(
  "outboxTransaction() carries a busy relay's pending sent marks; a rollback gives them back",
  async (env) => {
    const { sql, js, log } = await setup(env);
    // Each batch waits in beforePublish until the test lets it go, so the relay is kept busy.
    const gates: PromiseWithResolvers<void>[] = [];
    const entered: PromiseWithResolvers<void>[] = [0, 1].map(() => Promise.withResolvers<void>());
    const relay = new OutboxRelay({
      sql,
      js,
      log,
      prefix: env.prefix,
      pollIntervalMs: 60_000,
      markDelayMs: 60_000,
      beforePublish: async () => {
        const gate = Promise.withResolvers<void>();
        gates.push(gate);
        entered[gates.length - 1]?.resolve();
        await gate.promise;
      },
    });
    const sent = async (ids: string[]) =>
      (await sql<{ n: number }[]>`
        select count(*)::int as n from outbox where id = any(${ids}::uuid[]) and sent_at is not null`)[
        0
      ]!
        .n;
    const enqueue = async (events: ReturnType<typeof messageSentEvent>[]) => {
      await outboxTransaction(sql, async (tx) => {
        await enqueueEvents(tx, events);
      });
      return events.map((e) => e.id);
    };
    try {
      await relay.start();
      const first = await enqueue([messageSentEvent(), messageSentEvent()]);
      await entered[0]!.promise;
      const second = await enqueue([messageSentEvent()]);
      gates[0]!.resolve();
      // The first batch went out with the second waiting: its marks wait for a transaction.
      await entered[1]!.promise;
      assert.equal(await sent(first), 0);
      await assert.rejects(outboxTransaction(sql, async (tx) => {
        await tx`select 1`;
        throw new Error("rollback");
      }));
      assert.equal(await sent(first), 0, "the rolled back transaction marked nothing");
      await outboxTransaction(sql, async (tx) => {
        await tx`select 1`;
      });
      assert.equal(await sent(first), 2, "marked by the next transaction");
      assert.equal(await sent(second), 0);
      gates[1]!.resolve();
      // Nothing left to publish: the relay marks the last batch itself.
      await waitFor(async () => (await outboxBacklog(sql)).count === 0, { what: "marked" });
    } finally {
      for (const gate of gates) gate.resolve();
      await relay.stop();
      await sql.end();
    }
  },
);

integrationTest(
  "outboxTransaction(): rows handed to a relay that died after the commit go out after their lease",
  async (env) => {
    const { sql, nc, js, names, log } = await setup(env);
    const other = openDatabase(env.dialogsDatabaseUrl);
    const dying = new OutboxRelay({ sql, js, log, prefix: env.prefix, leaseMs: 400 });
    const survivor = new OutboxRelay({
      sql: other,
      js,
      log,
      prefix: env.prefix,
      pollIntervalMs: 50,
    });
    try {
      await dying.start();
      await survivor.start();
      const event = messageSentEvent();
      const committed = await outboxTransaction(sql, async (tx) => {
        await enqueueEvent(tx, event);
        // Gone before the commit hands it the row, as a process killed right after the commit.
        await dying.stop();
        return Date.now();
      });
      const [row] = await sql<{ leased: boolean }[]>`
        select claimed_until > clock_timestamp() as leased from outbox where id = ${event.id}`;
      assert.equal(row!.leased, true, "written claimed, so the other relay leaves it meanwhile");
      await waitFor(async () => (await outboxBacklog(sql)).count === 0, { what: "published" });
      assert.ok(Date.now() - committed >= 300, "published by the survivor once the lease ran out");
      const info = await (await jetstreamManager(nc)).streams.info(names.stream);
      assert.equal(info.state.messages, 1);
    } finally {
      await survivor.stop();
      await other.end();
      await sql.end();
    }
  },
);

integrationTest(
  "outboxTransaction() on several instances at once: every row is published, each once",
  async (env) => {
    const { sql, nc, js, names, log } = await setup(env);
    const pools = [sql, openDatabase(env.dialogsDatabaseUrl), openDatabase(env.dialogsDatabaseUrl)];
    let published = 0;
    const relays = pools.map((pool) =>
      new OutboxRelay({
        sql: pool,
        js,
        log,
        prefix: env.prefix,
        batchSize: 5,
        pollIntervalMs: 20,
        onPublished: (n) => published += n,
      })
    );
    try {
      await Promise.all(relays.map((r) => r.start()));
      await Promise.all(
        pools.flatMap((pool) =>
          Array.from({ length: 20 }, () =>
            outboxTransaction(pool, async (tx) => {
              await enqueueEvents(tx, [messageSentEvent(), messageSentEvent()]);
            }))
        ),
      );
      await waitFor(async () => (await outboxBacklog(sql)).count === 0, { what: "outbox drained" });
      const info = await (await jetstreamManager(nc)).streams.info(names.stream);
      assert.equal(info.state.messages, 120);
      assert.equal(published, 120, "no row was published by two relays");
    } finally {
      await Promise.all(relays.map((r) => r.stop()));
      await Promise.all(pools.slice(1).map((p) => p.end()));
      await sql.end();
    }
  },
);

Deno.test("OutboxRelay refuses a missing prefix and a lease that is not a positive integer", () => {
  const opts = { sql: {} as never, js: {} as never, log: createLogger("test", "error") };
  assert.throws(() => new OutboxRelay({ ...opts, prefix: "" }), /needs the subject prefix/);
  assert.throws(
    () => new OutboxRelay({ ...opts, prefix: "p", leaseMs: 0 }),
    /leaseMs must be a positive integer, got 0/,
  );
});

integrationTest(
  "publishAfterCommit(): the events go out after the commit under their ids, with no outbox row",
  async (env) => {
    const { sql, nc, js, names, log } = await setup(env);
    const relay = new OutboxRelay({ sql, js, log, prefix: env.prefix, pollIntervalMs: 60_000 });
    const jsm = await jetstreamManager(nc);
    const stored = async () => (await jsm.streams.info(names.stream)).state.messages;
    try {
      await sql.begin((tx) => {
        assert.throws(() => publishAfterCommit(tx, [messageSentEvent()]), /outboxTransaction/);
      });
      const handed = await outboxTransaction(sql, async (tx) => {
        await tx`select 1`;
        return publishAfterCommit(tx, [messageSentEvent()]);
      });
      assert.equal(handed, false, "no relay in this process: nothing handed over");

      await relay.start();
      await assert.rejects(outboxTransaction(sql, async (tx) => {
        await tx`select 1`;
        assert.equal(publishAfterCommit(tx, [messageSentEvent()]), true);
        throw new Error("rollback");
      }));
      const rowless = messageSentEvent("req-rowless"), inOutbox = messageSentEvent();
      await outboxTransaction(sql, async (tx, withCommit) => {
        await tx`select 1`;
        withCommit(enqueueEvent(tx, inOutbox));
        publishAfterCommit(tx, [rowless]);
      });
      await waitFor(async () => await stored() >= 2, { what: "both published" });
      await waitFor(async () => (await outboxBacklog(sql)).count === 0, { what: "marked" });
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(await stored(), 2, "neither the rolled back one nor the one without a relay");
      const ids = await sql<{ id: string }[]>`select id from outbox`;
      assert.deepEqual(ids.map((r) => r.id), [inOutbox.id], "only the enqueued event has a row");
      const published = await Promise.all(
        [1, 2].map(async (seq) => (await jsm.streams.getMessage(names.stream, { seq }))!),
      );
      const mine = published.find((m) => m.header.get("Nats-Msg-Id") === rowless.id)!;
      assert.equal(mine.json<{ id: string }>().id, rowless.id);
      assert.equal(mine.header.get("X-Request-ID"), "req-rowless");
    } finally {
      await relay.stop();
      await sql.end();
    }
  },
);

integrationTest(
  "publishAfterCommit(): a failed publish drops the event for its caller to republish; rows are retried",
  async (env) => {
    const { sql, nc, js, names, log } = await setup(env);
    let failing = 2; // the batch handed over: the row and the rowless event
    const flaky = {
      publish: (...args: Parameters<JetStreamClient["publish"]>) =>
        failing-- > 0 ? Promise.reject(new Error("NATS is down")) : js.publish(...args),
    } as unknown as JetStreamClient;
    const relay = new OutboxRelay({ sql, js: flaky, log, prefix: env.prefix });
    try {
      await relay.start();
      const rowless = messageSentEvent(), inOutbox = messageSentEvent();
      await outboxTransaction(sql, async (tx, withCommit) => {
        await tx`select 1`;
        withCommit(enqueueEvent(tx, inOutbox));
        publishAfterCommit(tx, [rowless]);
      });
      await waitFor(async () => (await outboxBacklog(sql)).count === 0, { what: "row published" });
      await new Promise((r) => setTimeout(r, 300));
      const jsm = await jetstreamManager(nc);
      assert.equal((await jsm.streams.info(names.stream)).state.messages, 1);
      const only = (await jsm.streams.getMessage(names.stream, { seq: 1 }))!;
      assert.equal(only.header.get("Nats-Msg-Id"), inOutbox.id, "the rowless event was dropped");
      assert.ok(env.logs.some((l) => l.msg === "outbox relay failed; will retry"));
    } finally {
      await relay.stop();
      await sql.end();
    }
  },
);
