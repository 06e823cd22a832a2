/** Graceful shutdown on SIGTERM/SIGINT: run the service's stop once, then exit. */
import type { Logger } from "./log.ts";

/** Calls `stop` on the first SIGTERM or SIGINT and exits 0 (1 if stop fails or exceeds `timeoutMs`). */
export function exitOnSignal(stop: () => Promise<void>, log: Logger, timeoutMs = 25_000): void {
  let stopping = false;
  const onSignal = (signal: Deno.Signal) => {
    if (stopping) return;
    stopping = true;
    log.info("shutting down", { signal });
    const timer = setTimeout(() => {
      log.error("shutdown took too long; exiting", { timeoutMs });
      Deno.exit(1);
    }, timeoutMs);
    stop().then(
      () => {
        clearTimeout(timer);
        log.info("stopped cleanly");
        Deno.exit(0);
      },
      (err) => {
        log.error("shutdown failed", { err });
        Deno.exit(1);
      },
    );
  };
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    Deno.addSignalListener(signal, () => onSignal(signal));
  }
}
