/** The dead-letter stream as operators see it: list what is there, replay one or all after a fix. */
import { jetstream, type JetStreamManager, jetstreamManager } from "@nats-io/jetstream";
import { headers as natsHeaders } from "@nats-io/nats-core";
import type { NatsConnection } from "@nats-io/transport-node";
import { HEADERS } from "./events.ts";
import type { StreamNames } from "./jetstream.ts";

/** One dead letter. */
export interface DeadLetter {
  /** Its sequence in the dead-letter stream, the handle for replay. */
  seq: number;
  /** The subject it was published on originally. */
  subject: string;
  reason: string;
  /** Stream and sequence it had originally. */
  origin: string;
  time: string;
  requestId?: string;
  eventType?: string;
  data: string;
}

/** Every dead letter, oldest first. */
export async function listDeadLetters(
  nc: NatsConnection,
  names: StreamNames,
): Promise<DeadLetter[]> {
  const jsm = await jetstreamManager(nc);
  const info = await jsm.streams.info(names.deadLetterStream);
  const letters: DeadLetter[] = [];
  for (
    let seq = info.state.first_seq;
    seq <= info.state.last_seq && info.state.messages > 0;
    seq++
  ) {
    const letter = await readDeadLetter(jsm, names, seq);
    if (letter) letters.push(letter);
  }
  return letters;
}

async function readDeadLetter(
  jsm: JetStreamManager,
  names: StreamNames,
  seq: number,
): Promise<DeadLetter | null> {
  const m = await jsm.streams.getMessage(names.deadLetterStream, { seq }).catch(() => null);
  if (!m) return null; // deleted after a replay
  return {
    seq,
    subject: m.header.get(HEADERS.deadLetterSubject),
    reason: m.header.get(HEADERS.deadLetterReason),
    origin: `${m.header.get(HEADERS.deadLetterStream)}#${m.header.get(HEADERS.deadLetterSequence)}`,
    time: m.time.toISOString(),
    requestId: m.header.get(HEADERS.requestId) || undefined,
    eventType: m.header.get(HEADERS.eventType) || undefined,
    data: new TextDecoder().decode(m.data),
  };
}

/**
 * Publishes dead letter `seq` again on its original subject with its original headers, then
 * deletes it from the dead-letter stream. Returns false when there is no such dead letter.
 */
export async function replayDeadLetter(
  nc: NatsConnection,
  names: StreamNames,
  seq: number,
): Promise<boolean> {
  const jsm = await jetstreamManager(nc);
  const m = await jsm.streams.getMessage(names.deadLetterStream, { seq }).catch(() => null);
  if (!m) return false;
  const h = natsHeaders();
  for (const [key, values] of m.header) {
    if (key.startsWith("Dead-Letter-") || key.startsWith("Nats-")) continue;
    for (const v of values) h.append(key, v);
  }
  const subject = m.header.get(HEADERS.deadLetterSubject);
  if (!subject.startsWith(`${names.prefix}.`)) {
    throw new Error(`dead letter ${seq} names no subject of prefix ${names.prefix}: "${subject}"`);
  }
  // The msgID makes a replay repeated within the dedup window harmless; consumers are idempotent.
  await jetstream(nc).publish(subject, m.data, {
    headers: h,
    msgID: `replay-${names.deadLetterStream}-${seq}`,
  });
  await jsm.streams.deleteMessage(names.deadLetterStream, seq);
  return true;
}
