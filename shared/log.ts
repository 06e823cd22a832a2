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
  return new JsonLinesLogger(service, LEVEL_ORDER[level], sink, base);
}

/**
 * A logger and its children: one object each (a consumer makes a child per event), whose fields
 * join the parent's only when a line is written.
 */
class JsonLinesLogger implements Logger {
  readonly #service: string;
  readonly #min: number;
  readonly #sink: LogSink;
  readonly #base: LogFields;
  readonly #own: LogFields | undefined;

  constructor(service: string, min: number, sink: LogSink, base: LogFields, own?: LogFields) {
    this.#service = service;
    this.#min = min;
    this.#sink = sink;
    this.#base = base;
    this.#own = own;
  }

  debug(msg: string, fields?: LogFields): void {
    if (LEVEL_ORDER.debug >= this.#min) this.#write("debug", msg, fields);
  }

  info(msg: string, fields?: LogFields): void {
    if (LEVEL_ORDER.info >= this.#min) this.#write("info", msg, fields);
  }

  warn(msg: string, fields?: LogFields): void {
    if (LEVEL_ORDER.warn >= this.#min) this.#write("warn", msg, fields);
  }

  error(msg: string, fields?: LogFields): void {
    if (LEVEL_ORDER.error >= this.#min) this.#write("error", msg, fields);
  }

  child(fields: LogFields): Logger {
    const base = this.#own ? { ...this.#base, ...this.#own } : this.#base;
    return new JsonLinesLogger(this.#service, this.#min, this.#sink, base, fields);
  }

  enabled(level: LogLevel): boolean {
    return LEVEL_ORDER[level] >= this.#min;
  }

  #write(level: LogLevel, msg: string, fields?: LogFields): void {
    const traceId = activeTraceId();
    const line = {
      time: new Date().toISOString(),
      level,
      service: this.#service,
      msg,
      ...(traceId ? { trace_id: traceId } : {}),
      ...this.#base,
      ...this.#own,
      ...fields,
    };
    this.#sink(JSON.stringify(line, errorReplacer));
  }
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
