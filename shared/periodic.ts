/** A background task that runs every interval until stopped, never overlapping itself. */
import type { Logger } from "./log.ts";

/** A running periodic task. */
export interface PeriodicTask {
  /** Runs the task now (waiting for a run in progress first); for tests and operators. */
  runNow(): Promise<void>;
  /** Stops after the run in progress. */
  stop(): Promise<void>;
}

/** Starts `task` every `intervalMs`; a failing run is logged and the next one still happens. */
export function startPeriodic(
  name: string,
  intervalMs: number,
  task: () => Promise<void>,
  log: Logger,
): PeriodicTask {
  let running = true;
  let current: Promise<void> = Promise.resolve();
  let timer: ReturnType<typeof setTimeout> | undefined;

  const run = (): Promise<void> => {
    current = current.then(async () => {
      try {
        await task();
      } catch (err) {
        log.warn(`${name} failed; will run again`, { err });
      }
    });
    return current;
  };
  const schedule = () => {
    if (!running) return;
    timer = setTimeout(() => run().then(schedule), intervalMs);
  };
  schedule();
  return {
    runNow: run,
    async stop() {
      running = false;
      clearTimeout(timer);
      await current;
    },
  };
}
