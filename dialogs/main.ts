/** The dialogs service's composition root: the messages API, the reply handler and the saga sweeper. */
import { LATENCY_BUCKETS } from "../shared/metrics.ts";
import { startPeriodic } from "../shared/periodic.ts";
import {
  runMain,
  type RunningService,
  type StartOptions,
  startService,
} from "../shared/service.ts";
import { mountDialogsRoutes } from "./app.ts";
import { type DialogsConfig, loadDialogsConfig } from "./config.ts";
import { createDialogEventHandler } from "./dialog_events.ts";
import { postgresMessageStore, sweepTimedOutSends } from "./message_store.ts";
import { mountWebApp } from "./web.ts";

/** How often the sweeper looks for timed-out sends: a quarter of the timeout, at most every second. */
export function sweepIntervalMs(timeoutMs: number): number {
  return Math.max(50, Math.min(1_000, Math.floor(timeoutMs / 4)));
}

/** Starts dialogs with `config`; `options` are for tests. */
export function startDialogs(
  config: DialogsConfig,
  options: Partial<Pick<StartOptions, "logSink" | "hostname" | "relay">> = {},
): Promise<RunningService> {
  return startService({
    ...options,
    name: "dialogs",
    config,
    migrations: new URL("./migrations/", import.meta.url),
    setup: async ({ sql, metrics, app, log }) => {
      mountDialogsRoutes(app, { store: postgresMessageStore(sql), jwtSecret: config.JWT_SECRET });
      await mountWebApp(app, {
        jwtSecret: config.JWT_SECRET,
        devLogin: config.DEV_LOGIN,
        countersUrl: config.COUNTERS_PUBLIC_URL,
      });
      if (config.DEV_LOGIN) log.warn("DEV_LOGIN is on: anyone can sign in as any user");
      const sagaOutcomes = metrics.counter("saga_outcomes_total", "Finished send sagas by status");
      const sagaLatency = metrics.histogram(
        "saga_send_to_terminal_seconds",
        "Time from send to committed or failed",
        LATENCY_BUCKETS.concat([10, 30, 60]),
      );
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
        },
        log,
      );
      return {
        handler: createDialogEventHandler({
          sql,
          sagaOutcomes,
          sagaLatency,
          sagaTimeoutMs: config.SAGA_TIMEOUT_MS,
        }),
        close: () => sweeper.stop(),
      };
    },
  });
}

if (import.meta.main) await runMain("dialogs", loadDialogsConfig, startDialogs);
