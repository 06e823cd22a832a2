import assert from "node:assert/strict";
import {
  ensureDatabase,
  isPermanentDbError,
  openDatabase,
  pipelinedTransaction,
  type Sql,
} from "./db.ts";
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

integrationTest(
  "pipelinedTransaction() sets lock_timeout 2 s and statement_timeout 5 s unless told otherwise",
  async (env) => {
    await withTable(env, async (sql) => {
      const settings = () =>
        sql<{ lock: string; statement: string }[]>`
          select current_setting('lock_timeout') as lock,
                 current_setting('statement_timeout') as statement`;
      const inside = (options?: { lockTimeoutMs?: number; statementTimeoutMs?: number }) =>
        pipelinedTransaction(sql, async (tx) => {
          const [row] = await tx<{ lock: string; statement: string }[]>`
            select current_setting('lock_timeout') as lock,
                   current_setting('statement_timeout') as statement`;
          return row;
        }, options);
      assert.deepEqual(await inside(), { lock: "2s", statement: "5s" });
      assert.deepEqual(await inside({ lockTimeoutMs: 150, statementTimeoutMs: 700 }), {
        lock: "150ms",
        statement: "700ms",
      });
      // Local to the transaction: the connection goes back to the pool with its own settings.
      assert.deepEqual((await settings())[0], { lock: "0", statement: "0" });
    });
  },
);

integrationTest(
  "pipelinedTransaction() waiting on a locked row fails with 55P03, a transient error",
  async (env) => {
    await withTable(env, async (sql) => {
      await sql`insert into items values (1, 'a')`;
      const other = openDatabase(env.dialogsDatabaseUrl, { max: 1 });
      try {
        await sql.begin(async (holder) => {
          await holder`select * from items where id = 1 for update`;
          const err = await pipelinedTransaction(other, async (tx) => {
            await tx`update items set note = 'b' where id = 1`;
          }, { lockTimeoutMs: 200 }).then(() => undefined, (e: unknown) => e);
          assert.equal((err as { code?: string })?.code, "55P03");
          assert.equal(isPermanentDbError(err), false, "retried, never refused");
        });
        // Once the lock is gone the same transaction goes through.
        await pipelinedTransaction(other, async (tx) => {
          await tx`update items set note = 'b' where id = 1`;
        }, { lockTimeoutMs: 200 });
        assert.deepEqual([...await sql`select note from items`], [{ note: "b" }]);
      } finally {
        await other.end();
      }
    });
  },
);

integrationTest(
  "pipelinedTransaction() cancels a statement past statementTimeoutMs with 57014, a transient error",
  async (env) => {
    await withTable(env, async (sql) => {
      const err = await pipelinedTransaction(sql, async (tx) => {
        await tx`select pg_sleep(2)`;
      }, { statementTimeoutMs: 100 }).then(() => undefined, (e: unknown) => e);
      assert.equal((err as { code?: string })?.code, "57014");
      assert.equal(isPermanentDbError(err), false);
    });
  },
);

Deno.test("pipelinedTransaction() refuses a timeout that is not a positive integer", async () => {
  await assert.rejects(
    pipelinedTransaction({} as Sql, () => Promise.resolve(), { lockTimeoutMs: 0 }),
    /lockTimeoutMs must be a positive integer of milliseconds, got 0/,
  );
  await assert.rejects(
    pipelinedTransaction({} as Sql, () => Promise.resolve(), { statementTimeoutMs: 1.5 }),
    /statementTimeoutMs must be a positive integer of milliseconds, got 1.5/,
  );
});

Deno.test("isPermanentDbError() refuses integrity and data errors, never timeouts", () => {
  const cases: [string, boolean][] = [
    ["23505", true], // unique_violation
    ["23514", true], // check_violation
    ["22P02", true], // invalid_text_representation
    ["55P03", false], // lock_not_available (lock_timeout)
    ["57014", false], // query_canceled (statement_timeout)
    ["40001", false], // serialization_failure
    ["40P01", false], // deadlock_detected
  ];
  for (const [code, permanent] of cases) {
    assert.equal(isPermanentDbError({ code }), permanent, code);
  }
  assert.equal(isPermanentDbError(new Error("no code")), false);
});
