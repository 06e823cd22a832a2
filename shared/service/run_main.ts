/** The entry point of a service process, and what its start function takes and returns. */
import { ConfigError, type ServiceConfig } from "../config.ts";
import { createLogger, type LogSink } from "../log.ts";
import { exitOnSignal } from "../shutdown.ts";

/** A running service. */
export interface RunningService {
  port: number;
  /** Stops taking requests, finishes the work in hand and closes every connection. */
  stop(): Promise<void>;
}

/** What tests may change when they start a service; a process passes none. */
export interface StartOptions {
  logSink?: LogSink;
  /** 0.0.0.0 unless given. */
  hostname?: string;
  /** Off only in tests that simulate a crash between commit and publish. */
  relay?: boolean;
}

/**
 * The entry point of a service process and the only reader of the environment: config errors
 * (also those found at start) in one line, start, stop on signals.
 */
export async function runMain<C extends ServiceConfig>(
  name: string,
  loadConfig: (env: Record<string, string | undefined>) => C,
  start: (config: C) => Promise<RunningService>,
): Promise<void> {
  let config: C;
  try {
    config = loadConfig(Deno.env.toObject());
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    console.error(`${name}: ${err.message}`);
    Deno.exit(1);
  }
  const log = createLogger(name, config.LOG_LEVEL);
  let service: RunningService;
  try {
    service = await start(config);
  } catch (err) {
    // A configuration only the servers can judge (a stream of another deployment): one line too.
    if (err instanceof ConfigError) {
      console.error(`${name}: ${err.message}`);
      Deno.exit(1);
    }
    log.error("start-up failed", { err });
    Deno.exit(1);
  }
  exitOnSignal(service.stop, log);
}
