/** A service's logger and metrics registry, the first things its composition root makes. */
import { DEV_JWT_SECRET, type ServiceConfig } from "../config.ts";
import { createLogger, type Logger, type LogSink } from "../log.ts";
import { createMetrics, type Metrics } from "../metrics.ts";

/** The service's logger at LOG_LEVEL; warns when JWT_SECRET is the development default. */
export function serviceLogger(name: string, config: ServiceConfig, sink?: LogSink): Logger {
  const log = createLogger(name, config.LOG_LEVEL, sink);
  if (config.JWT_SECRET === DEV_JWT_SECRET) {
    log.warn("JWT_SECRET is the development default; set it outside local development");
  }
  return log;
}

/** A metrics registry that already reports where the process's memory goes. */
export function serviceMetrics(): Metrics {
  const metrics = createMetrics();
  // The resident set, and the JavaScript heap inside it.
  metrics.gauge("process_resident_memory_bytes", "Resident set size", () => Deno.memoryUsage().rss);
  metrics.gauge(
    "process_heap_used_bytes",
    "JavaScript heap in use",
    () => Deno.memoryUsage().heapUsed,
  );
  metrics.gauge(
    "process_heap_total_bytes",
    "JavaScript heap reserved",
    () => Deno.memoryUsage().heapTotal,
  );
  metrics.gauge(
    "process_external_memory_bytes",
    "Memory of objects outside the JavaScript heap (buffers)",
    () => Deno.memoryUsage().external,
  );
  return metrics;
}
