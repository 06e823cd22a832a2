import assert from "node:assert/strict";
import { ensureDatabase, openDatabase } from "./db.ts";
import { migrate } from "./migrate.ts";
import { integrationTest } from "../testing/env.ts";

integrationTest(
  "migrate() applies each migration once when several instances start at once",
  async (env) => {
    await Promise.all([
      ensureDatabase(env.dialogsDatabaseUrl),
      ensureDatabase(env.dialogsDatabaseUrl),
    ]);
    const pools = [openDatabase(env.dialogsDatabaseUrl), openDatabase(env.dialogsDatabaseUrl)];
    try {
      const migrations = [
        { name: "0001_a.sql", sql: "create table a (id int primary key)" },
        { name: "0002_b.sql", sql: "insert into a values (1)" },
      ];
      const results = await Promise.all(pools.map((sql) => migrate(sql, migrations)));
      assert.deepEqual(results.flat().sort(), ["0001_a.sql", "0002_b.sql"]);
      const rows = await pools[0]!`select count(*)::int as n from a`;
      assert.equal(rows[0]!.n, 1);
      assert.deepEqual(await migrate(pools[0]!, migrations), []);
    } finally {
      await Promise.all(pools.map((p) => p.end()));
    }
  },
);

integrationTest("migrate() rolls a failing migration back entirely", async (env) => {
  await ensureDatabase(env.countersDatabaseUrl);
  const sql = openDatabase(env.countersDatabaseUrl);
  try {
    await assert.rejects(migrate(sql, [
      { name: "0001_ok.sql", sql: "create table ok (id int)" },
      { name: "0002_bad.sql", sql: "create table broken (" },
    ]));
    const [row] = await sql`select to_regclass('ok') as t`;
    assert.equal(row!.t, null);
  } finally {
    await sql.end();
  }
});
