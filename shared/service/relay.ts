/** A service's outbox relay with its metrics. */
import type { Envelope } from "../events.ts";
import type { Logger } from "../log.ts";
import type { Metrics } from "../metrics.ts";
import { outboxBacklog, OutboxRelay } from "../outbox.ts";
import type { Connections } from "./connections.ts";

/** What createServiceRelay needs. */
export interface ServiceRelayDeps {
  connections: Connections;
  log: Logger;
  metrics: Metrics;
  /** Runs before the outbox publishes a batch (see OutboxRelayOptions). */
  beforePublish?: (events: Envelope[]) => Promise<void>;
}

/** An OutboxRelay, not started, that counts what it publishes; registers the backlog gauges. */
export function createServiceRelay(
  { connections: { sql, js, names }, log, metrics, beforePublish }: ServiceRelayDeps,
): OutboxRelay {
  const published = metrics.counter("outbox_published_total", "Events published from the outbox");
  const relay = new OutboxRelay({
    sql,
    js,
    log,
    prefix: names.prefix,
    beforePublish,
    onPublished: (count) => published.inc({}, count),
  });
  metrics.gauge(
    "outbox_backlog",
    "Unsent outbox rows",
    async () => (await outboxBacklog(sql)).count,
  );
  metrics.gauge(
    "outbox_oldest_age_seconds",
    "Age of the oldest unsent outbox row",
    async () => (await outboxBacklog(sql)).oldestAgeMs / 1000,
  );
  return relay;
}
