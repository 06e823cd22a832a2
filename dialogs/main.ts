/**
 * The dialogs service's composition root, in the order it starts: config, connections, migrations,
 * the app with the messages API and the web page, the saga sweeper, consumer, relay, server.
 */
import { createBaseApp } from "../shared/http/base_app.ts";
import { mountApiDocs } from "../shared/http/api_docs.ts";
import { mountReadiness } from "../shared/http/readiness.ts";
import { LATENCY_BUCKETS } from "../shared/metrics.ts";
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
import { mountDialogsRoutes } from "./app.ts";
import { type DialogsConfig, loadDialogsConfig } from "./config.ts";
import { createDialogEventHandler } from "./dialog_events.ts";
import { postgresMessageStore, sweepStaleSends, sweepTimedOutSends } from "./message_store.ts";
import { mountWebApp } from "./web.ts";

/** How often the sweeper looks for timed-out sends: a quarter of the timeout, at most every second. */
export function sweepIntervalMs(timeoutMs: number): number {
  return Math.max(50, Math.min(1_000, Math.floor(timeoutMs / 4)));
}

/** Starts dialogs with `config`; `options` are for tests. */
export async function startDialogs(
  config: DialogsConfig,
  options: StartOptions = {},
): Promise<RunningService> {
  const log = serviceLogger("dialogs", config, options.logSink);
  const metrics = serviceMetrics();
  const connections = await openConnections("dialogs", config, log);
  const { sql } = connections;
  await migrateService(sql, new URL("./migrations/", import.meta.url), log);

  const app = createBaseApp({ service: "dialogs", log, metrics });
  mountDialogsRoutes(app, {
    store: postgresMessageStore(sql),
    jwtSecret: config.JWT_SECRET,
    maxGroupMembers: config.MAX_GROUP_MEMBERS,
  });
  await mountWebApp(app, {
    jwtSecret: config.JWT_SECRET,
    devLogin: config.DEV_LOGIN,
    countersUrl: config.COUNTERS_PUBLIC_URL,
  });
  if (config.DEV_LOGIN) log.warn("DEV_LOGIN is on: anyone can sign in as any user");
  mountReadiness(app, connectionChecks(connections));
  mountApiDocs(app, "dialogs API");

  const sagaOutcomes = metrics.counter("saga_outcomes_total", "Finished send sagas by status");
  const sagaLatency = metrics.histogram(
    "saga_send_to_terminal_seconds",
    "Time from send to committed or failed",
    LATENCY_BUCKETS.concat([10, 30, 60]),
  );
  const republished = metrics.counter(
    "dialogs_sends_republished_total",
    "Pending dialog sends whose event the sweeper published again",
  );
  // Each tick fails the timed-out sends, then republishes the events of the pending ones older
  // than REPUBLISH_AFTER_MS (a dialog send's event has no outbox row: sendMessages).
  const sweeper = startPeriodic(
    "saga timeout sweep",
    sweepIntervalMs(config.SAGA_TIMEOUT_MS),
    async () => {
      await sweepTimedOutSends(sql, config.SAGA_TIMEOUT_MS, {
        onBatch: (failed) => {
          for (const m of failed) {
            log.warn("send timed out; failed and cancelled", {
              requestId: m.request_id ?? undefined,
              messageId: m.id,
              transactionId: m.transaction_id,
            });
            sagaLatency.observe((Date.now() - m.created_at.getTime()) / 1000, {
              status: "failed",
            });
          }
          sagaOutcomes.inc({ status: "timed_out" }, failed.length);
        },
      });
      const n = await sweepStaleSends(sql);
      if (n > 0) {
        republished.inc({}, n);
        log.warn("pending sends republished: their events may not have got out", { count: n });
      }
    },
    log,
  );

  const consumer = await createServiceConsumer({
    service: "dialogs",
    connections,
    log,
    metrics,
    maxDeliveries: config.EVENT_RETRY_BUDGET,
    handler: createDialogEventHandler({
      sql,
      sagaOutcomes,
      sagaLatency,
      sagaTimeoutMs: config.SAGA_TIMEOUT_MS,
    }),
  });
  const relay = createServiceRelay({ connections, log, metrics });
  if (options.relay !== false) await relay.start();
  consumer.start();
  const server = serveHttp(app.fetch, {
    service: "dialogs",
    config,
    log,
    hostname: options.hostname,
  });

  return {
    port: server.addr.port,
    async stop() {
      // Each step is logged, so a stop that hangs says where.
      await server.shutdown();
      log.debug("stopping: HTTP server closed");
      await consumer.stop();
      log.debug("stopping: consumer drained");
      await relay.stop();
      log.debug("stopping: relay stopped");
      await sweeper.stop();
      log.debug("stopping: sweeper stopped");
      await closeConnections(connections);
    },
  };
}

if (import.meta.main) await runMain("dialogs", loadDialogsConfig, startDialogs);
