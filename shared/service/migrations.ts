/** A service's migrations at start: the shared ones (the outbox), then the service's own folder. */
import type { Sql } from "../db.ts";
import type { Logger } from "../log.ts";
import { migrate, readMigrations, sharedMigrations } from "../migrate.ts";

/** Applies the shared migrations and those in `dir` not applied yet, and logs what it applied. */
export async function migrateService(sql: Sql, dir: URL, log: Logger): Promise<void> {
  const applied = await migrate(sql, [
    ...(await sharedMigrations()),
    ...(await readMigrations(dir)),
  ]);
  if (applied.length) log.info("migrations applied", { applied });
}
