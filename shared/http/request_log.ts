/** What an answered request leaves behind: the latency metric and the access log. */
import type { Logger } from "../log.ts";
import { type HistogramSeries, LATENCY_BUCKETS, type Metrics } from "../metrics.ts";

/** What an answered request leaves behind. */
export interface AnsweredRequest {
  requestId: string;
  method: string;
  path: string;
  /** The route's pattern, the latency metric's label (`unmatched` when no route matched). */
  route: string;
  status: number;
  /** performance.now() when the request arrived. */
  started: number;
  userId?: string;
}

/** Records an answered request: its latency in the metric and, at `info`, an access-log line. */
export type RecordRequest = (request: AnsweredRequest) => void;

/** The recorder of both the Hono app and a fast path, so both count in the same metric. */
export function requestRecorder(log: Logger, metrics: Metrics): RecordRequest {
  const latency = metrics.histogram(
    "http_request_duration_seconds",
    "HTTP request latency by route, method and status",
    LATENCY_BUCKETS,
  );
  // Each series found by route, method and status in turn: no label object or key per request.
  const byRoute = new Map<string, Map<string, Map<number, HistogramSeries>>>();
  const seriesOf = (route: string, method: string, status: number) => {
    let byMethod = byRoute.get(route);
    if (!byMethod) byRoute.set(route, byMethod = new Map());
    let byStatus = byMethod.get(method);
    if (!byStatus) byMethod.set(method, byStatus = new Map());
    let series = byStatus.get(status);
    if (!series) {
      byStatus.set(status, series = latency.series({ route, method, status: String(status) }));
    }
    return series;
  };
  return ({ requestId, method, path, route, status, started, userId }) => {
    const seconds = (performance.now() - started) / 1000;
    seriesOf(route, method, status).observe(seconds);
    // Building the fields of a line the level drops would cost on the read path.
    if (!log.enabled("info") || path.startsWith("/health") || path === "/metrics") return;
    log.info("request", {
      requestId,
      method,
      path,
      status,
      durationMs: Math.round(seconds * 10_000) / 10,
      userId,
    });
  };
}
