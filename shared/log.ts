/**
 * Structured JSON-lines logging; every line names the service and, where known, the request id and
 * (with tracing on) the `trace_id` of the active span.
 */
import { activeTraceId } from "./tracing.ts";

/** How much a logger prints. */
export type LogLevel = "debug" | "info" | "warn" | "error";

const LEVEL_ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** Extra fields for one log line. */
export type LogFields = Record<string, unknown>;

/** A logger that writes one JSON object per line. */
export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** A logger that adds `fields` to every line it writes. */
  child(fields: LogFields): Logger;
  /** True when lines of `level` are written; lets hot paths skip building their fields. */
  enabled(level: LogLevel): boolean;
}

/** Where log lines go; stdout by default, an array in tests. */
export type LogSink = (line: string) => void;

const stdoutSink: LogSink = (line) => console.log(line);

/** Creates a logger for `service` that drops lines below `level`. */
export function createLogger(
  service: string,
  level: LogLevel = "info",
  sink: LogSink = stdoutSink,
  base: LogFields = {},
): Logger {
  const min = LEVEL_ORDER[level];
  const write = (lvl: LogLevel, msg: string, fields?: LogFields) => {
    if (LEVEL_ORDER[lvl] < min) return;
    const traceId = activeTraceId();
    const line = {
      time: new Date().toISOString(),
      level: lvl,
      service,
      msg,
      ...(traceId ? { trace_id: traceId } : {}),
      ...base,
      ...fields,
    };
    sink(JSON.stringify(line, errorReplacer));
  };
  return {
    debug: (msg, fields) => write("debug", msg, fields),
    info: (msg, fields) => write("info", msg, fields),
    warn: (msg, fields) => write("warn", msg, fields),
    error: (msg, fields) => write("error", msg, fields),
    child: (fields) => createLogger(service, level, sink, { ...base, ...fields }),
    enabled: (lvl) => LEVEL_ORDER[lvl] >= min,
  };
}

/** Errors serialise to their name, message and code instead of `{}`. */
function errorReplacer(_key: string, value: unknown): unknown {
  if (value instanceof Error) {
    const code = (value as { code?: unknown }).code;
    return { name: value.name, message: value.message, ...(code ? { code } : {}) };
  }
  if (typeof value === "bigint") return value.toString();
  return value;
}
