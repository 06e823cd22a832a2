/** JetStream set-up that is safe to run on every start, by several instances at once. */
import {
  AckPolicy,
  type ConsumerConfig,
  DeliverPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  type JetStreamManager,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
  type StreamConfig,
  type StreamInfo,
} from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { ConfigError } from "./config.ts";
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

/** Longest stream name derived from a prefix (NATS_STREAM's own limit). */
const MAX_STREAM_NAME = 64;

/**
 * The stream of a deployment whose NATS_STREAM is unset: its prefix upper-cased with dots as `_`,
 * so `saga` gives `SAGA` and `acme.saga` gives `ACME_SAGA`.
 */
export function defaultStreamName(prefix: string): string {
  return prefix.toUpperCase().replaceAll(".", "_");
}

/**
 * Stream names from the configured stream (derived from the prefix when undefined) and prefix.
 * Throws a ConfigError when a derived name would be longer than a stream name may be.
 */
export function streamNames(stream: string | undefined, prefix: string): StreamNames {
  const name = stream ?? defaultStreamName(prefix);
  if (name.length > MAX_STREAM_NAME) {
    throw new ConfigError(
      `NATS_SUBJECT_PREFIX ${JSON.stringify(prefix)} gives a stream name longer than ` +
        `${MAX_STREAM_NAME} characters; set NATS_STREAM`,
    );
  }
  return { stream: name, deadLetterStream: `${name}_DLQ`, prefix };
}

/** The durable consumer name of `service` in a deployment: e.g. `counters_saga` (no dots allowed). */
export function durableName(prefix: string, service: "dialogs" | "counters"): string {
  return `${service}_${prefix.replaceAll(".", "_")}`;
}

/** JetStream API error codes this project acts on; the client's JetStreamApiCodes lacks some. */
export const JetStreamCodes = {
  ConsumerNotFound: JetStreamApiCodes.ConsumerNotFound,
  StreamNotFound: JetStreamApiCodes.StreamNotFound,
  /** A stream of that name exists with another configuration. */
  StreamNameExist: 10058,
  /** The subjects overlap another stream's. */
  StreamSubjectOverlap: 10065,
  /** A consumer of that name exists with another configuration (older servers). */
  ConsumerNameExist: 10013,
  /** A consumer of that name exists (servers 2.10+ creating with action "create"). */
  ConsumerAlreadyExists: 10148,
} as const;

/** Whether `err` is the JetStream API's answer with one of `codes`. */
export function isJetStreamApiError(err: unknown, ...codes: number[]): err is JetStreamApiError {
  return err instanceof JetStreamApiError && codes.includes(err.code);
}

/** How long JetStream remembers a msgID to drop a duplicate publish. */
const DUPLICATE_WINDOW_NS = 2 * 60 * 1_000_000_000;

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
    // Otherwise every request (each JetStream publish: an outbox event, a reply) builds two Error
    // objects with stack traces up front, in case it fails: a few percent of a service's CPU.
    noAsyncTraces: true,
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

/**
 * Creates the stream, or updates it when its subjects are this deployment's. A stream holding
 * another deployment's subjects is never changed: that is a ConfigError naming what to set.
 */
async function ensureStream(
  jsm: JetStreamManager,
  config: Partial<StreamConfig> & { name: string; subjects: string[] },
) {
  let info: StreamInfo;
  try {
    info = await jsm.streams.info(config.name);
  } catch (err) {
    if (!isJetStreamApiError(err, JetStreamCodes.StreamNotFound)) throw err;
    try {
      await jsm.streams.add(config);
      return;
    } catch (addErr) {
      if (isJetStreamApiError(addErr, JetStreamCodes.StreamSubjectOverlap)) {
        throw await overlapError(jsm, config.name, config.subjects);
      }
      // Created meanwhile by another instance (same subjects) or another deployment (not ours).
      if (!isJetStreamApiError(addErr, JetStreamCodes.StreamNameExist)) throw addErr;
      info = await jsm.streams.info(config.name);
    }
  }
  const theirs = info.config.subjects ?? [];
  if (!ownsSubjects(theirs, config.subjects)) {
    throw new ConfigError(
      `NATS stream ${config.name} holds subjects ${JSON.stringify(theirs)} of another ` +
        `deployment, not ${JSON.stringify(config.subjects)}: set NATS_STREAM to a stream of ` +
        `this deployment's own (or leave it unset) or NATS_SUBJECT_PREFIX to that stream's prefix`,
    );
  }
  await jsm.streams.update(config.name, config);
}

/** Whether every subject of an existing stream lies under one of `ours` (`<prefix>.>` forms). */
function ownsSubjects(theirs: string[], ours: string[]): boolean {
  const roots = ours.map((s) => s.endsWith(">") ? s.slice(0, -1) : s);
  return theirs.length > 0 &&
    theirs.every((t) => ours.includes(t) || roots.some((r) => r.endsWith(".") && t.startsWith(r)));
}

async function overlapError(
  jsm: JetStreamManager,
  name: string,
  subjects: string[],
): Promise<ConfigError> {
  const owner = await jsm.streams.find(subjects[0]!).catch(() => undefined);
  // For a dead-letter stream, NATS_STREAM names the owner's saga stream (without `_DLQ`).
  const setting = owner && name.endsWith("_DLQ") && owner.endsWith("_DLQ")
    ? owner.slice(0, -4)
    : owner ?? "that stream";
  return new ConfigError(
    `NATS stream ${name} cannot be created: its subjects ${JSON.stringify(subjects)} overlap ` +
      `those of ${owner ? `stream ${owner}` : "another stream"}; set NATS_STREAM to ${setting} ` +
      `or NATS_SUBJECT_PREFIX to one no other deployment uses`,
  );
}

/** How long a delivered, unacknowledged message stays with its instance before redelivery. */
export const ACK_WAIT_MS = 2_000;

/** The durable pull consumer through which `service` receives the other service's events. */
export function consumerConfig(
  names: StreamNames,
  service: "dialogs" | "counters",
): Partial<ConsumerConfig> & { durable_name: string } {
  const source = service === "dialogs" ? "counters" : "dialogs";
  return {
    durable_name: durableName(names.prefix, service),
    filter_subject: subjectsFrom(names.prefix, source),
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    // A killed instance's message returns after ACK_WAIT_MS; a live one's handler keeps its message
    // with in-progress acks (EventConsumer), so a slow handler is not redelivered meanwhile.
    ack_wait: ACK_WAIT_MS * 1_000_000,
    // Unlimited on the server: EventConsumer dead-letters an event after its retry budget itself,
    // with the last error as reason; a server limit would drop it silently instead.
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
    if (!isJetStreamApiError(err, JetStreamCodes.ConsumerNotFound)) throw err;
    try {
      await jsm.consumers.add(stream, config);
    } catch (addErr) {
      // Another instance created it between our look-up and our add; the next start updates it.
      const exists = [JetStreamCodes.ConsumerNameExist, JetStreamCodes.ConsumerAlreadyExists];
      if (!isJetStreamApiError(addErr, ...exists)) throw addErr;
    }
  }
}
