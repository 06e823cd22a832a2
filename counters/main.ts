/** The counters service's composition root: the cache, the read path, the live stream and the saga handler. */
import { type PeriodicTask, startPeriodic } from "../shared/periodic.ts";
import {
  runMain,
  type RunningService,
  type StartOptions,
  startService,
} from "../shared/service.ts";
import { mountCountersRoutes } from "./app.ts";
import { type CoherenceTimings, createCoherentCounters } from "./coherence.ts";
import { createCounterEventHandler, refreshBeforeReplies } from "./counter_events.ts";
import { fastCountersRead } from "./fast_read.ts";
import { createVerifiedTokens } from "../shared/auth.ts";
import { type CountersConfig, loadCountersConfig } from "./config.ts";
import { createLiveUpdates } from "./live_updates.ts";
import { createLocalCache } from "./local_cache.ts";
import { openRedisCache } from "./redis_cache.ts";
import { reconcileOnce } from "./reconcile.ts";

/** Starts counters with `config`; `options` are for tests. */
export function startCounters(
  config: CountersConfig,
  options: Partial<Pick<StartOptions, "logSink" | "hostname" | "relay">> & {
    /** Faster coherence timings, for tests. */
    cacheTimings?: Partial<CoherenceTimings>;
  } = {},
): Promise<RunningService> {
  const { cacheTimings, ...startOptions } = options;
  return startService({
    ...startOptions,
    name: "counters",
    config,
    migrations: new URL("./migrations/", import.meta.url),
    setup: ({ sql, nc, log, metrics, app, names, recordRequest }) => {
      const redis = openRedisCache({ url: config.REDIS_URL, keyPrefix: config.REDIS_KEY_PREFIX });
      const live = createLiveUpdates(nc, names.prefix, log);
      const reader = createCoherentCounters({
        sql,
        redis,
        local: createLocalCache(),
        live,
        nc,
        log,
        cacheLookups: metrics.counter("counters_cache_lookups_total", "Cache lookups by result"),
        databaseLoads: metrics.counter(
          "counters_database_loads_total",
          "Counters read from Postgres",
        ),
        generationChanges: metrics.counter(
          "counters_cache_generations_total",
          "New Redis cache generations by reason",
        ),
        liveAckTimeouts: metrics.counter(
          "counters_live_ack_timeouts_total",
          "Live updates another instance did not acknowledge in time",
        ),
        timings: cacheTimings,
      });
      metrics.gauge(
        "counters_cache_trusted",
        "1 while Redis may be read (a confirmed generation), 0 otherwise",
        () => reader.trusted() ? 1 : 0,
      );
      metrics.gauge(
        "counters_cache_memory_serving",
        "1 while the in-process cache is caught up with live updates and served, 0 otherwise",
        () => reader.servesFromMemory() ? 1 : 0,
      );
      const shutdown = new AbortController();
      const tokens = createVerifiedTokens(config.JWT_SECRET);
      const routes = mountCountersRoutes(app, {
        tokens,
        reader,
        heartbeatMs: config.SSE_HEARTBEAT_MS,
        corsOrigins: config.CORS_ORIGINS,
        shutdown: shutdown.signal,
      });

      metrics.gauge("counters_live_streams", "Open live streams", routes.openStreams);
      const repairs = metrics.counter("counters_reconcile_repairs_total", "Counters repaired");
      const afterChange = (userIds: string[]) => reader.changed(userIds);
      const tasks: PeriodicTask[] = [];
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
        readiness: { redis: () => reader.ping() },
        beforePublish: refreshBeforeReplies(afterChange, sql),
        beforeStop: () => shutdown.abort(),
        fastPath: fastCountersRead({ tokens, reader, recordRequest }),
        async close() {
          await Promise.all(tasks.map((t) => t.stop()));
          await reader.close();
          live.close();
          await redis.close();
        },
      };
    },
  });
}

if (import.meta.main) await runMain("counters", loadCountersConfig, startCounters);
