import assert from "node:assert/strict";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
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
      await enqueueEvent(tx, env.prefix, messageSentEvent("req-outbox"));
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
    const relay = new OutboxRelay({ sql, js, log, pollIntervalMs: 60_000 });
    try {
      const events = [
        messageSentEvent("req-outbox"),
        messageSentEvent("req-outbox"),
        messageSentEvent("req-outbox"),
      ];
      await relay.start();
      await outboxTransaction(sql, async (tx) => {
        for (const e of events) await enqueueEvent(tx, env.prefix, e);
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
    const relay = new OutboxRelay({ sql: other, js, log, pollIntervalMs: 60_000 });
    try {
      await relay.start();
      await outboxTransaction(sql, async (tx) => {
        await enqueueEvent(tx, env.prefix, messageSentEvent("req-notify"));
      });
      await waitFor(async () => (await outboxBacklog(sql)).count === 0, { what: "outbox drained" });
    } finally {
      await relay.stop();
      await other.end();
      await sql.end();
    }
  },
);

integrationTest("enqueueEvents() writes each event once, in one statement", async (env) => {
  const { sql } = await setup(env);
  try {
    const [a, b] = [messageSentEvent("req-many"), messageSentEvent()];
    await enqueueEvents(sql, env.prefix, [a, b, a]);
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
      await enqueueEvent(sql, env.prefix, event);
      const relay = new OutboxRelay({ sql, js, log });
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
        batchSize: 7,
        pollIntervalMs: 20,
        onPublished: (n) => published += n,
      })
    );
    try {
      for (let i = 0; i < 60; i++) {
        await enqueueEvent(sql, env.prefix, messageSentEvent("req-outbox"));
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
    const relay = new OutboxRelay({ sql, js, log, pollIntervalMs: 20 });
    try {
      const jsm = await jetstreamManager(nc);
      await jsm.streams.delete(names.stream);
      await enqueueEvent(sql, env.prefix, messageSentEvent("req-outbox"));
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
