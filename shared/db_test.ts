import assert from "node:assert/strict";
import { ensureDatabase, openDatabase, pipelinedTransaction, type Sql } from "./db.ts";
import { integrationTest, type TestEnv } from "../testing/env.ts";

async function withTable(env: TestEnv, fn: (sql: Sql) => Promise<void>): Promise<void> {
  await ensureDatabase(env.dialogsDatabaseUrl);
  // One connection: a transaction that kept it would make the next statement wait forever.
  const sql = openDatabase(env.dialogsDatabaseUrl, { max: 1 });
  try {
    await sql`create table items (id int primary key, note text not null check (note <> ''))`;
    await fn(sql);
  } finally {
    await sql.end();
  }
}

const ids = async (sql: Sql) =>
  (await sql<{ id: number }[]>`select id from items order by id`).map((r) => r.id);

integrationTest(
  "pipelinedTransaction() commits fn's statements and those passed to withCommit",
  async (env) => {
    await withTable(env, async (sql) => {
      const result = await pipelinedTransaction(sql, async (tx, withCommit) => {
        await Promise.all([
          tx`insert into items values (1, 'a')`,
          tx`insert into items values (2, 'b')`,
        ]);
        withCommit(tx`insert into items values (3, 'c')`);
        return "done";
      });
      assert.equal(result, "done");
      assert.deepEqual(await ids(sql), [1, 2, 3]);
    });
  },
);

integrationTest(
  "pipelinedTransaction() rolls everything back when a withCommit statement fails",
  async (env) => {
    await withTable(env, async (sql) => {
      await assert.rejects(
        pipelinedTransaction(sql, async (tx, withCommit) => {
          await tx`insert into items values (1, 'a')`;
          withCommit(tx`insert into items values (2, '')`);
        }),
        (err: { code?: string }) => err.code === "23514",
      );
      assert.deepEqual(await ids(sql), []);
      // The connection went back to the pool in a usable state.
      await pipelinedTransaction(sql, async (tx) => await tx`insert into items values (4, 'd')`);
      assert.deepEqual(await ids(sql), [4]);
    });
  },
);

integrationTest("pipelinedTransaction() rolls back and rethrows when fn throws", async (env) => {
  await withTable(env, async (sql) => {
    await assert.rejects(
      pipelinedTransaction(sql, async (tx, withCommit) => {
        await tx`insert into items values (1, 'a')`;
        withCommit(tx`insert into items values (2, 'b')`);
        throw new Error("changed my mind");
      }),
      /changed my mind/,
    );
    assert.deepEqual(await ids(sql), []);
  });
});

integrationTest(
  "pipelinedTransaction() fails and commits nothing when a statement failed, even one fn caught",
  async (env) => {
    await withTable(env, async (sql) => {
      await assert.rejects(
        pipelinedTransaction(sql, async (tx) => {
          await tx`insert into items values (1, 'a')`;
          await tx`insert into items values (2, '')`.catch(() => {});
        }),
        (err: { code?: string }) => err.code === "23514",
      );
      assert.deepEqual(await ids(sql), []);
    });
  },
);
