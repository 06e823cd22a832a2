/** The dialogs service's composition root: the messages API and the handler of counters' replies. */
import {
  runMain,
  type RunningService,
  type StartOptions,
  startService,
} from "../shared/service.ts";
import { mountDialogsRoutes } from "./app.ts";
import { type DialogsConfig, loadDialogsConfig } from "./config.ts";
import { createDialogEventHandler } from "./dialog_events.ts";

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
    setup: ({ sql, metrics, app, names }) => {
      mountDialogsRoutes(app, { sql, prefix: names.prefix, jwtSecret: config.JWT_SECRET });
      return {
        handler: createDialogEventHandler({
          sql,
          sagaOutcomes: metrics.counter("saga_outcomes_total", "Finished send sagas by status"),
        }),
      };
    },
  });
}

if (import.meta.main) await runMain("dialogs", loadDialogsConfig, startDialogs);
