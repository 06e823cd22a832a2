/** What an answered request leaves behind: the latency metric and the access log. */
import type { Logger } from "../log.ts";
import { LATENCY_BUCKETS, type Metrics } from "../metrics.ts";

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
  return ({ requestId, method, path, route, status, started, userId }) => {
    const seconds = (performance.now() - started) / 1000;
    latency.observe(seconds, { route, method, status: String(status) });
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
