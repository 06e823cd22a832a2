/** JetStream set-up that is safe to run on every start, by several instances at once. */
import {
  AckPolicy,
  type ConsumerConfig,
  DeliverPolicy,
  type JetStreamManager,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
  type StreamConfig,
} from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { subjectsFrom } from "./events.ts";

/** Where a service's saga events live. */
export interface StreamNames {
  /** The stream of saga events (`NATS_STREAM`). */
  stream: string;
  /** The stream of dead letters. */
  deadLetterStream: string;
  /** The subject prefix (`NATS_SUBJECT_PREFIX`). */
  prefix: string;
}

/** Stream names derived from the configured stream and prefix. */
export function streamNames(stream: string, prefix: string): StreamNames {
  return { stream, deadLetterStream: `${stream}_DLQ`, prefix };
}

/** How long JetStream remembers a msgID to drop a duplicate publish. */
export const DUPLICATE_WINDOW_NS = 2 * 60 * 1_000_000_000;

const DAY_NS = 24 * 60 * 60 * 1_000_000_000;

/** The servers of `NATS_URL`: one URL, or several separated by commas (the nodes of a cluster). */
export function natsServers(url: string): string[] {
  return url.split(",").map((s) => s.trim()).filter(Boolean);
}

/** Opens a NATS connection that reconnects forever, to any of the servers in `url`. */
export function connectNats(url: string, name: string): Promise<NatsConnection> {
  return connect({
    servers: natsServers(url),
    name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
    timeout: 5_000,
  });
}

/**
 * Creates or updates the saga stream and its dead-letter stream, each kept in `replicas` copies
 * (`NATS_STREAM_REPLICAS`: 3 on a three-node cluster).
 */
export async function ensureStreams(
  nc: NatsConnection,
  names: StreamNames,
  replicas = 1,
): Promise<void> {
  const jsm = await jetstreamManager(nc);
  await ensureStream(jsm, {
    name: names.stream,
    subjects: [`${names.prefix}.>`],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    num_replicas: replicas,
    duplicate_window: DUPLICATE_WINDOW_NS,
    max_age: 7 * DAY_NS,
  });
  await ensureStream(jsm, {
    name: names.deadLetterStream,
    subjects: [`${names.prefix}_dlq.>`],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    num_replicas: replicas,
    duplicate_window: DUPLICATE_WINDOW_NS,
    max_age: 30 * DAY_NS,
  });
}

async function ensureStream(
  jsm: JetStreamManager,
  config: Partial<StreamConfig> & { name: string },
) {
  try {
    await jsm.streams.info(config.name);
    await jsm.streams.update(config.name, config);
  } catch (err) {
    if (!isNotFound(err)) throw err;
    try {
      await jsm.streams.add(config);
    } catch (addErr) {
      // Another instance created it between our look-up and our add.
      if (!/already in use|exists/i.test(String(addErr))) throw addErr;
    }
  }
}

/** The durable pull consumer through which `service` receives the other service's events. */
export function consumerConfig(
  names: StreamNames,
  service: "dialogs" | "counters",
): Partial<ConsumerConfig> & { durable_name: string } {
  const source = service === "dialogs" ? "counters" : "dialogs";
  return {
    durable_name: service,
    filter_subject: subjectsFrom(names.prefix, source),
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    // Handlers are single short transactions; a crashed instance's message returns after 10 s.
    ack_wait: 10_000_000_000,
    // Transient failures are retried until they succeed; poison messages are dead-lettered.
    max_deliver: -1,
    max_ack_pending: 1_000,
  };
}

/** Creates the durable consumer or brings its configuration up to date. */
export async function ensureConsumer(
  nc: NatsConnection,
  stream: string,
  config: Partial<ConsumerConfig> & { durable_name: string },
): Promise<void> {
  const jsm = await jetstreamManager(nc);
  try {
    await jsm.consumers.info(stream, config.durable_name);
    await jsm.consumers.update(stream, config.durable_name, config);
  } catch (err) {
    if (!isNotFound(err)) throw err;
    try {
      await jsm.consumers.add(stream, config);
    } catch (addErr) {
      if (!/already in use|exists/i.test(String(addErr))) throw addErr;
    }
  }
}

function isNotFound(err: unknown): boolean {
  return /not found/i.test(String(err));
}
