/** Applies SQL migrations in order, once each, under an advisory lock so concurrent starts are safe. */
import type { Sql } from "./db.ts";

/** One migration: a unique, sortable name and its SQL. */
export interface Migration {
  name: string;
  sql: string;
}

// An arbitrary constant; every instance of every service takes the same lock in its own database.
const MIGRATION_LOCK_KEY = 7_206_117;

/** Reads `*.sql` files from a folder URL, sorted by name. */
export async function readMigrations(dir: URL): Promise<Migration[]> {
  const migrations: Migration[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (!entry.isFile || !entry.name.endsWith(".sql")) continue;
    migrations.push({
      name: entry.name,
      sql: await Deno.readTextFile(new URL(entry.name, dir)),
    });
  }
  return migrations.sort((a, b) => a.name.localeCompare(b.name));
}

/** The migrations every service shares (the outbox). */
export function sharedMigrations(): Promise<Migration[]> {
  return readMigrations(new URL("./migrations/", import.meta.url));
}

/** Applies the migrations not applied yet; returns the names it applied. */
export async function migrate(sql: Sql, migrations: Migration[]): Promise<string[]> {
  const applied: string[] = [];
  await sql.begin(async (tx) => {
    // Transaction-scoped, so a crash mid-migration releases it and rolls everything back.
    await tx`select pg_advisory_xact_lock(${MIGRATION_LOCK_KEY})`;
    await tx`create table if not exists schema_migrations (
      name text primary key,
      applied_at timestamptz not null default now()
    )`;
    const done = new Set(
      (await tx<{ name: string }[]>`select name from schema_migrations`).map((r) => r.name),
    );
    for (const m of migrations) {
      if (done.has(m.name)) continue;
      await tx.unsafe(m.sql);
      await tx`insert into schema_migrations (name) values (${m.name})`;
      applied.push(m.name);
    }
  });
  return applied;
}
