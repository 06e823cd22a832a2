/**
 * Traces: one OpenTelemetry trace per saga, from the first HTTP request through the outbox,
 * JetStream, the other service's consumer and transaction, and back to `committed`.
 *
 * Deno makes the spans of `Deno.serve` and `fetch` and exports everything over OTLP when
 * `OTEL_DENO=true`; it is then the global `@opentelemetry/api` implementation, so the spans Deno
 * cannot see (transactions, the relay's publish, the consumer's handling) are made here with that
 * API. A trace crosses NATS as a W3C `traceparent` header, and the outbox keeps the `traceparent`
 * of the span that wrote each row, so a trace survives a relay restart.
 *
 * Off (the default), every function here returns at its first line: no span, no context, nothing
 * allocated on the read path.
 */
import {
  type Attributes,
  type Context,
  context,
  propagation,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
} from "@opentelemetry/api";

/** Whether Deno exports traces: `OTEL_DENO=true` (read once, at start). */
export const tracingOn = readTracingOn();

function readTracingOn(): boolean {
  try {
    return Deno.env.get("OTEL_DENO") === "true";
  } catch {
    return false; // no --allow-env: tracing stays off
  }
}

const tracer = trace.getTracer("unread-counters");

/** The header (and outbox column) a trace crosses services in. */
export const TRACEPARENT = "traceparent";

/** The W3C `traceparent` of the active span, or null (tracing off, or no span). */
export function currentTraceparent(): string | null {
  if (!tracingOn) return null;
  const carrier: Record<string, string> = {};
  propagation.inject(context.active(), carrier);
  return carrier[TRACEPARENT] ?? null;
}

/** The context a `traceparent` names, or the active one when there is none. */
function contextOf(traceparent: string | null | undefined): Context {
  if (!traceparent) return context.active();
  return propagation.extract(context.active(), { [TRACEPARENT]: traceparent });
}

/** What a span is: its kind, its parent (a `traceparent`; else the active span) and attributes. */
export interface SpanOptions {
  kind?: "internal" | "producer" | "consumer";
  parent?: string | null;
  /** Also link the parent (a consumer's link to the producer's span). */
  linkParent?: boolean;
  attributes?: Attributes;
}

const KINDS = {
  internal: SpanKind.INTERNAL,
  producer: SpanKind.PRODUCER,
  consumer: SpanKind.CONSUMER,
} as const;

/**
 * Runs `fn` inside a new span (active while `fn` runs), ended when `fn` settles; a throw marks it
 * as an error. With tracing off it is `fn()`.
 */
export function inSpan<T>(name: string, options: SpanOptions, fn: (span?: Span) => Promise<T>) {
  if (!tracingOn) return fn();
  const parent = contextOf(options.parent);
  const parentSpan = options.linkParent ? trace.getSpanContext(parent) : undefined;
  const span = tracer.startSpan(name, {
    kind: KINDS[options.kind ?? "internal"],
    attributes: options.attributes,
    links: parentSpan ? [{ context: parentSpan }] : undefined,
  }, parent);
  return context.with(trace.setSpan(parent, span), async () => {
    try {
      return await fn(span);
    } catch (err) {
      span.recordException(err as Error);
      span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
      throw err;
    } finally {
      span.end();
    }
  });
}

/** A span started by startSpan: the `traceparent` to send on, and how to end it. */
export interface StartedSpan {
  traceparent: string | null;
  end(err?: unknown): void;
}

/**
 * Starts a span that is not made active (a relay publishing many rows at once starts one per
 * row); undefined with tracing off.
 */
export function startSpan(name: string, options: SpanOptions): StartedSpan | undefined {
  if (!tracingOn) return undefined;
  const parent = contextOf(options.parent);
  const span = tracer.startSpan(name, {
    kind: KINDS[options.kind ?? "internal"],
    attributes: options.attributes,
  }, parent);
  const carrier: Record<string, string> = {};
  propagation.inject(trace.setSpan(parent, span), carrier);
  return {
    traceparent: carrier[TRACEPARENT] ?? null,
    end(err) {
      if (err !== undefined) {
        span.recordException(err as Error);
        span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
      }
      span.end();
    },
  };
}

/**
 * Records a span that already happened, from `startMs` to `endMs` (`performance.timeOrigin`
 * based, as `performance.now()` + timeOrigin), in the trace of `parent`. A batch that served many
 * traces at once (a group commit) records one such span in each of them.
 */
export function recordSpan(
  name: string,
  parent: string | null | undefined,
  startMs: number,
  endMs: number,
  attributes?: Attributes,
): void {
  if (!tracingOn || !parent) return;
  const span = tracer.startSpan(name, { startTime: startMs, attributes }, contextOf(parent));
  span.end(endMs);
}

/** A wall-clock time in ms for recordSpan. */
export const spanClock = (): number => performance.timeOrigin + performance.now();

/** The active span's trace id, for log lines; undefined when tracing is off or nothing is active. */
export function activeTraceId(): string | undefined {
  if (!tracingOn) return undefined;
  const span = trace.getActiveSpan();
  return span?.isRecording() ? span.spanContext().traceId : undefined;
}

/** Adds a point in time to the active span (a saga's `committed`, say). */
export function addSpanEvent(name: string, attributes?: Attributes): void {
  if (!tracingOn) return;
  trace.getActiveSpan()?.addEvent(name, attributes);
}
