/** The counters service's composition root: the cache, the read path, the live stream and the saga handler. */
import type { NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "../shared/log.ts";
import { startPeriodic } from "../shared/periodic.ts";
import {
  runMain,
  type RunningService,
  type StartOptions,
  startService,
} from "../shared/service.ts";
import { mountCountersRoutes } from "./app.ts";
import { openCounterCache } from "./counter_cache.ts";
import {
  createCounterEventHandler,
  refreshAndAnnounce,
  refreshBeforeReplies,
} from "./counter_events.ts";
import { createCounterReader } from "./counter_reads.ts";
import { fastCountersRead } from "./fast_read.ts";
import { createVerifiedTokens } from "../shared/auth.ts";
import { type CountersConfig, loadCountersConfig } from "./config.ts";
import { createLiveUpdates } from "./live_updates.ts";
import { createLocalCache, type LocalCache } from "./local_cache.ts";
import { reconcileOnce } from "./reconcile.ts";

/** Starts counters with `config`; `options` are for tests. */
export function startCounters(
  config: CountersConfig,
  options: Partial<Pick<StartOptions, "logSink" | "hostname" | "relay">> = {},
): Promise<RunningService> {
  return startService({
    ...options,
    name: "counters",
    config,
    migrations: new URL("./migrations/", import.meta.url),
    setup: ({ sql, nc, log, metrics, app, names, recordRequest }) => {
      const cache = openCounterCache({ url: config.REDIS_URL, keyPrefix: config.REDIS_KEY_PREFIX });
      const local = createLocalCache();
      watchNatsStatus(nc, local, log);
      const reader = createCounterReader({
        sql,
        cache,
        local,
        log,
        cacheLookups: metrics.counter("counters_cache_lookups_total", "Cache lookups by result"),
        databaseLoads: metrics.counter(
          "counters_database_loads_total",
          "Counters read from Postgres",
        ),
      });
      const live = createLiveUpdates(nc, names.prefix, log);
      live.onChange((userId, counters) => local.offer(userId, counters));
      const shutdown = new AbortController();
      const tokens = createVerifiedTokens(config.JWT_SECRET);
      const routes = mountCountersRoutes(app, {
        tokens,
        reader,
        live,
        heartbeatMs: config.SSE_HEARTBEAT_MS,
        corsOrigins: config.CORS_ORIGINS,
        shutdown: shutdown.signal,
      });

      metrics.gauge("counters_live_streams", "Open live streams", routes.openStreams);
      const repairs = metrics.counter("counters_reconcile_repairs_total", "Counters repaired");
      const afterChange = refreshAndAnnounce(reader, live);
      const tasks = [
        startPeriodic("cache write retry", 1_000, async () => {
          await reader.retryFailedWrites();
        }, log),
      ];
      if (config.RECONCILE_INTERVAL_MS > 0) {
        tasks.push(startPeriodic("reconciliation", config.RECONCILE_INTERVAL_MS, async () => {
          const repaired = await reconcileOnce(sql);
          for (const r of repaired) log.warn("counter repaired", { ...r });
          repairs.inc({}, repaired.length);
          await afterChange([...new Set(repaired.map((r) => r.userId))]);
        }, log));
      }
      return {
        handler: createCounterEventHandler({
          sql,
          applied: metrics.counter(
            "counters_events_applied_total",
            "Applied events by type and outcome",
          ),
          afterChange,
        }),
        readiness: { redis: () => cache.ping() },
        beforePublish: refreshBeforeReplies(afterChange, sql),
        beforeStop: () => shutdown.abort(),
        fastPath: fastCountersRead({ tokens, reader, recordRequest }),
        async close() {
          await Promise.all(tasks.map((t) => t.stop()));
          live.close();
          await cache.close();
        },
      };
    },
  });
}

/** While NATS is disconnected change events are missed, so the in-process cache serves nothing. */
function watchNatsStatus(nc: NatsConnection, local: LocalCache, log: Logger): void {
  (async () => {
    for await (const status of nc.status()) {
      if (status.type === "disconnect") {
        local.suspend();
        log.warn("NATS disconnected; in-process cache suspended");
      } else if (status.type === "reconnect") {
        local.resume();
        log.info("NATS reconnected; in-process cache resumed");
      }
    }
  })().catch(() => {});
}

if (import.meta.main) await runMain("counters", loadCountersConfig, startCounters);
