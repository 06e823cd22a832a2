/** A service's event consumer: its durable on the stream, its metrics, and the EventConsumer. */
import { jetstreamManager } from "@nats-io/jetstream";
import { EventConsumer, type EventHandler } from "../consumer.ts";
import { consumerConfig, ensureConsumer } from "../jetstream.ts";
import type { Logger } from "../log.ts";
import type { Metrics } from "../metrics.ts";
import { type Connections, waitAtStartup } from "./connections.ts";

/** What createServiceConsumer needs. */
export interface ServiceConsumerDeps {
  service: "dialogs" | "counters";
  connections: Connections;
  log: Logger;
  metrics: Metrics;
  /** Handles the events the service consumes. */
  handler: EventHandler;
  /** Deliveries of an event before one that still fails is dead-lettered (EVENT_RETRY_BUDGET). */
  maxDeliveries: number;
}

/**
 * Creates or updates the service's durable consumer and returns an EventConsumer on it, not started,
 * that counts every delivery's outcome; registers the consumer's and the dead letters' gauges.
 */
export async function createServiceConsumer(
  { service, connections: { nc, js, names }, log, metrics, handler, maxDeliveries }:
    ServiceConsumerDeps,
): Promise<EventConsumer> {
  const config = consumerConfig(names, service);
  await waitAtStartup(log, "the durable consumer", () => ensureConsumer(nc, names.stream, config));
  const consumed = metrics.counter(
    "saga_events_consumed_total",
    "Consumed events by outcome (processed, retried, dead_lettered) and type",
  );
  const redeliveries = metrics.counter(
    "saga_event_redeliveries_total",
    "Deliveries of events that had been delivered before",
  );
  const jsm = await waitAtStartup(log, "jetstream", () => jetstreamManager(nc));
  metrics.gauge(
    "saga_consumer_pending",
    "Events not yet delivered to this service's consumer",
    async () => (await jsm.consumers.info(names.stream, config.durable_name)).num_pending,
  );
  metrics.gauge(
    "saga_consumer_ack_pending",
    "Events delivered and not yet acknowledged",
    async () => (await jsm.consumers.info(names.stream, config.durable_name)).num_ack_pending,
  );
  metrics.gauge(
    "saga_dead_letters",
    "Events in the dead-letter stream",
    async () => (await jsm.streams.info(names.deadLetterStream)).state.messages,
  );
  return new EventConsumer({
    js,
    stream: names.stream,
    durable: config.durable_name,
    prefix: names.prefix,
    log,
    handler,
    maxDeliveries,
    onOutcome: (outcome, event, deliveryCount) => {
      const type = event?.type ?? "unparseable";
      consumed.inc({ outcome, type });
      if (deliveryCount > 1) redeliveries.inc({ type });
    },
  });
}
