/**
 * The counters service's composition root, in the order it starts: config, connections, migrations,
 * the cache and read path, the app with the counters API and live stream, reconciliation, consumer,
 * relay, server (behind the fast read path).
 */
import { createVerifiedTokens } from "../shared/auth.ts";
import { createBaseApp } from "../shared/http/base_app.ts";
import { mountApiDocs } from "../shared/http/api_docs.ts";
import { withFastPath } from "../shared/http/fast_path.ts";
import { mountReadiness } from "../shared/http/readiness.ts";
import { requestRecorder } from "../shared/http/request_log.ts";
import { startPeriodic } from "../shared/periodic.ts";
import {
  closeConnections,
  connectionChecks,
  openConnections,
} from "../shared/service/connections.ts";
import { createServiceConsumer } from "../shared/service/consumer.ts";
import { migrateService } from "../shared/service/migrations.ts";
import { createServiceRelay } from "../shared/service/relay.ts";
import { runMain, type RunningService, type StartOptions } from "../shared/service/run_main.ts";
import { serveHttp } from "../shared/service/serve.ts";
import { serviceLogger, serviceMetrics } from "../shared/service/telemetry.ts";
import { mountCountersRoutes } from "./app.ts";
import { type CoherenceTimings, createCoherentCounters } from "./coherence.ts";
import { type CountersConfig, loadCountersConfig } from "./config.ts";
import { createCounterEventHandler, refreshBeforeReplies } from "./counter_events.ts";
import { userKey } from "./counter_store.ts";
import { fastCountersRead } from "./fast_read.ts";
import { createLiveUpdates } from "./live_updates.ts";
import { createLocalCache } from "./local_cache.ts";
import { reconcileOnce } from "./reconcile.ts";
import { openRedisCache } from "./redis_cache.ts";

/** Starts counters with `config`; `options` are for tests. */
export async function startCounters(
  config: CountersConfig,
  options: StartOptions & {
    /** Faster coherence timings, for tests. */
    cacheTimings?: Partial<CoherenceTimings>;
  } = {},
): Promise<RunningService> {
  const log = serviceLogger("counters", config, options.logSink);
  const metrics = serviceMetrics();
  const connections = await openConnections("counters", config, log);
  const { sql, nc, names } = connections;
  await migrateService(sql, new URL("./migrations/", import.meta.url), log);

  // The fast read path records its requests as the app does, in the same metric and access log.
  const recordRequest = requestRecorder(log, metrics);
  const app = createBaseApp({ service: "counters", log, metrics, recordRequest });

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
    timings: options.cacheTimings,
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

  // Aborted first on stop, so open live streams end before the server waits for its requests.
  const endStreams = new AbortController();
  const tokens = createVerifiedTokens(config.JWT_SECRET);
  const routes = mountCountersRoutes(app, {
    tokens,
    reader,
    heartbeatMs: config.SSE_HEARTBEAT_MS,
    corsOrigins: config.CORS_ORIGINS,
    shutdown: endStreams.signal,
  });
  metrics.gauge("counters_live_streams", "Open live streams", routes.openStreams);
  mountReadiness(app, { ...connectionChecks(connections), redis: () => reader.ping() });
  mountApiDocs(app, "counters API");

  const repairs = metrics.counter("counters_reconcile_repairs_total", "Counters repaired");
  // Keys of the changed states: `user:<id>`, `group:<id>` (counters/cache_keys.ts).
  const afterChange = (keys: string[]) => reader.changed(keys);
  const reconciliation = config.RECONCILE_INTERVAL_MS > 0
    ? startPeriodic("reconciliation", config.RECONCILE_INTERVAL_MS, async () => {
      const repaired = await reconcileOnce(sql);
      for (const r of repaired) log.warn("counter repaired", { ...r });
      repairs.inc({}, repaired.length);
      await afterChange([...new Set(repaired.map((r) => userKey(r.userId)))]);
    }, log)
    : undefined;

  const consumer = await createServiceConsumer({
    service: "counters",
    connections,
    log,
    metrics,
    maxDeliveries: config.EVENT_RETRY_BUDGET,
    handler: createCounterEventHandler({
      sql,
      applied: metrics.counter(
        "counters_events_applied_total",
        "Applied events by type and outcome",
      ),
      afterChange,
      js: connections.js,
      prefix: names.prefix,
    }),
  });
  // Counters' replies go out from the consumer (countAndReply), never through its outbox: the relay
  // only drains the reply rows an earlier version left unsent, during an upgrade.
  const relay = createServiceRelay({
    connections,
    log,
    metrics,
    beforePublish: refreshBeforeReplies(afterChange, sql),
  });
  if (options.relay !== false) await relay.start();
  consumer.start();
  const fetch = withFastPath(fastCountersRead({ tokens, reader, recordRequest }), app.fetch);
  const server = serveHttp(fetch, { service: "counters", config, log, hostname: options.hostname });

  return {
    port: server.addr.port,
    async stop() {
      endStreams.abort();
      await server.shutdown();
      await consumer.stop();
      await relay.stop();
      await reconciliation?.stop();
      await reader.close();
      live.close();
      await redis.close();
      await closeConnections(connections);
    },
  };
}

if (import.meta.main) await runMain("counters", loadCountersConfig, startCounters);
