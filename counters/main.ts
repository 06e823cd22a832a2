/** The counters service's composition root: the cache, the read path and the saga handler. */
import {
  runMain,
  type RunningService,
  type StartOptions,
  startService,
} from "../shared/service.ts";
import { mountCountersRoutes } from "./app.ts";
import { openCounterCache } from "./counter_cache.ts";
import { createCounterEventHandler, refreshCacheBeforeReplies } from "./counter_events.ts";
import { createCounterReader } from "./counter_reads.ts";
import { type CountersConfig, loadCountersConfig } from "./config.ts";

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
    setup: ({ sql, log, metrics, app, names }) => {
      const cache = openCounterCache({ url: config.REDIS_URL, keyPrefix: config.REDIS_KEY_PREFIX });
      const reader = createCounterReader({
        sql,
        cache,
        log,
        cacheLookups: metrics.counter("counters_cache_lookups_total", "Cache lookups by result"),
      });
      mountCountersRoutes(app, { jwtSecret: config.JWT_SECRET, reader });
      return {
        handler: createCounterEventHandler({
          sql,
          prefix: names.prefix,
          increments: metrics.counter("counters_increments_total", "Counted messages by outcome"),
        }),
        readiness: { redis: () => cache.ping() },
        beforePublish: refreshCacheBeforeReplies(reader, sql),
        close: () => cache.close(),
      };
    },
  });
}

if (import.meta.main) await runMain("counters", loadCountersConfig, startCounters);
