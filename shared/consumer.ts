/**
 * A durable pull consumer loop: ack after the handler commits, in-progress acks while it runs, nak
 * with backoff, dead-letter poison and what still fails after the retry budget.
 */
import { type JetStreamClient, type JsMsg } from "@nats-io/jetstream";
import { headers as natsHeaders } from "@nats-io/nats-core";
import { deadLetterSubject, type Envelope, HEADERS, parseEvent } from "./events.ts";
import { inSpan, TRACEPARENT } from "./tracing.ts";
import type { Logger } from "./log.ts";

/** Thrown by a handler for an event that can never be processed; it goes to the dead-letter stream. */
export class PermanentEventError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "PermanentEventError";
  }
}

/** What a handler learns about the message besides the event. */
export interface HandlerContext {
  log: Logger;
  requestId?: string;
  deliveryCount: number;
}

/** Processes one event; resolves after its effects are committed. */
export type EventHandler = (event: Envelope, ctx: HandlerContext) => Promise<void>;

/** Deliveries of one event before a failing one is dead-lettered (about 6.5 min of backoff). */
export const RETRY_BUDGET = 20;

/** How long one delivery may be handled by default; every handler transaction times out far sooner. */
export const HANDLER_TIMEOUT_MS = 30_000;

/** The error a delivery that took longer than its handler timeout failed with. */
export class HandlerTimeoutError extends Error {
  constructor(ms: number) {
    super(`the handler did not finish within ${ms} ms`);
    this.name = "HandlerTimeoutError";
  }
}

/** Outcome counts, for metrics. */
export type ConsumeOutcome = "processed" | "retried" | "dead_lettered";

/** Options of an EventConsumer. */
export interface EventConsumerOptions {
  js: JetStreamClient;
  stream: string;
  durable: string;
  prefix: string;
  log: Logger;
  handler: EventHandler;
  /** Messages pulled ahead of processing (64 by default). */
  maxMessages?: number;
  /**
   * Messages handled at the same time (64 by default): as many as a group commit takes in one
   * batch, so under load the handlers' batches fill up and a transaction serves more events.
   */
  concurrency?: number;
  /** Deliveries after which an event that still fails is dead-lettered; RETRY_BUDGET by default. */
  maxDeliveries?: number;
  /**
   * How often a message in hand is reported in progress to the server; by default a third of the
   * consumer's ack_wait, so a live instance keeps its message and a killed one's is redelivered.
   */
  workingEveryMs?: number;
  /**
   * How long one delivery may be handled before it counts as failed (HANDLER_TIMEOUT_MS by
   * default): a handler stuck on a promise that never settles would otherwise be kept in progress
   * for ever, and its event would never reach the retry budget.
   */
  handlerTimeoutMs?: number;
  /** Called once per delivery with its outcome, the event (when it parsed) and the delivery count. */
  onOutcome?: (outcome: ConsumeOutcome, event: Envelope | undefined, deliveryCount: number) => void;
}

/** The nak delay for a message delivered `deliveryCount` times: 0.25 s doubling up to 30 s. */
export function retryDelayMs(deliveryCount: number): number {
  return Math.min(250 * 2 ** Math.max(0, deliveryCount - 1), 30_000);
}

/** Pulls and handles messages, several at a time, until stopped. */
export class EventConsumer {
  readonly #opts: EventConsumerOptions;
  #running = false;
  #loop?: Promise<void>;
  #close?: () => Promise<unknown>;
  readonly #inFlight = new Set<Promise<void>>();
  /** Messages received and not yet acked, nak'ed or terminated. */
  readonly #held = new Set<JsMsg>();
  #heartbeat?: ReturnType<typeof setInterval>;
  readonly #concurrency: number;
  readonly #maxDeliveries: number;

  constructor(options: EventConsumerOptions) {
    if (options.maxDeliveries !== undefined && !(options.maxDeliveries >= 1)) {
      throw new RangeError(`maxDeliveries must be at least 1, got ${options.maxDeliveries}`);
    }
    this.#opts = options;
    this.#concurrency = options.concurrency ?? 64;
    this.#maxDeliveries = options.maxDeliveries ?? RETRY_BUDGET;
  }

  /** Starts consuming in the background. */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#loop = this.#run();
  }

  /** Stops pulling, finishes the messages in hand, hands buffered ones back, and resolves. */
  async stop(): Promise<void> {
    if (!this.#running) return;
    this.#running = false;
    await this.#close?.().catch(() => {});
    await this.#loop;
    await Promise.all(this.#inFlight);
    clearInterval(this.#heartbeat);
    this.#heartbeat = undefined;
  }

  /** Reports every message in hand as in progress, every `everyMs` (once per consumer). */
  #startHeartbeat(everyMs: number): void {
    if (this.#heartbeat !== undefined) return;
    this.#heartbeat = setInterval(() => {
      for (const m of this.#held) {
        try {
          m.working();
        } catch { /* connection closed: the message is redelivered after ack_wait, as it must */ }
      }
    }, everyMs);
  }

  async #run(): Promise<void> {
    const { js, stream, durable, log } = this.#opts;
    while (this.#running) {
      try {
        const consumer = await js.consumers.get(stream, durable);
        // The server's default ack wait is 30 s when the consumer sets none.
        const ackWaitMs = ((await consumer.info(true)).config.ack_wait ?? 30e9) / 1_000_000;
        this.#startHeartbeat(this.#opts.workingEveryMs ?? Math.max(100, ackWaitMs / 3));
        // Short pulls: after a NATS node dies or a consumer leader changes, the client notices the
        // missing heartbeats (every half of `expires`) and pulls again within about a second.
        const messages = await consumer.consume({
          max_messages: this.#opts.maxMessages ?? 64,
          expires: 1_000,
        });
        this.#close = () => messages.close();
        if (!this.#running) await messages.close();
        for await (const m of messages) {
          if (!this.#running) {
            // Handed back at once so another instance need not wait for the ack timeout.
            m.nak();
            continue;
          }
          // Held (in progress) while it waits for a slot too: the ack wait runs from delivery.
          this.#held.add(m);
          // Up to `concurrency` events at once; ordering between them is not needed because
          // every handler is idempotent and takes the locks its change needs.
          while (this.#inFlight.size >= this.#concurrency) await Promise.race(this.#inFlight);
          const handling = this.#handle(m)
            .catch((err) => log.error("event handling failed unexpectedly", { err }))
            .finally(() => {
              this.#held.delete(m);
              this.#inFlight.delete(handling);
            });
          this.#inFlight.add(handling);
        }
        await Promise.all(this.#inFlight);
      } catch (err) {
        if (!this.#running) break;
        log.warn("consumer loop failed; restarting", { err, stream, durable });
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  }

  /** Handles one message in a CONSUMER span that continues the publisher's trace (tracing on). */
  #handle(m: JsMsg): Promise<void> {
    const parent = m.headers?.get(TRACEPARENT);
    if (!parent) return this.#handleMessage(m);
    const type = m.headers?.get(HEADERS.eventType) || m.subject;
    return inSpan(`process ${type}`, {
      kind: "consumer",
      parent,
      linkParent: true,
      attributes: {
        "messaging.system": "nats",
        "messaging.destination.name": m.subject,
        "messaging.nats.delivery_count": m.info.deliveryCount,
      },
    }, () => this.#handleMessage(m));
  }

  async #handleMessage(m: JsMsg): Promise<void> {
    const { log, handler } = this.#opts;
    const count = m.info.deliveryCount;
    const onOutcome = (outcome: ConsumeOutcome, event?: Envelope) =>
      this.#opts.onOutcome?.(outcome, event, count);
    const requestId = m.headers?.get(HEADERS.requestId) || undefined;
    const mlog = log.child({
      requestId,
      subject: m.subject,
      streamSeq: m.info.streamSequence,
      deliveryCount: m.info.deliveryCount,
    });
    let event: Envelope;
    try {
      event = parseEvent(m.data);
    } catch (err) {
      await this.#deadLetter(m, mlog, err);
      onOutcome("dead_lettered");
      return;
    }
    try {
      await withDeadline(
        handler(event, { log: mlog, requestId, deliveryCount: m.info.deliveryCount }),
        this.#opts.handlerTimeoutMs ?? HANDLER_TIMEOUT_MS,
      );
      // A plain ack, not ackAck: waiting for the server's confirmation costs a round trip per event,
      // and an ack that is lost only brings a redelivery, which the idempotent handlers absorb.
      m.ack();
      onOutcome("processed", event);
    } catch (err) {
      if (err instanceof PermanentEventError) {
        await this.#deadLetter(m, mlog, err);
        onOutcome("dead_lettered", event);
        return;
      }
      if (count >= this.#maxDeliveries) {
        // Out of budget: it leaves the retry schedule with its last error, for an operator to replay.
        const last = err instanceof Error ? err.message : String(err);
        await this.#deadLetter(m, mlog, `failed ${count} deliveries; last error: ${last}`);
        onOutcome("dead_lettered", event);
        return;
      }
      const delay = retryDelayMs(m.info.deliveryCount);
      mlog.warn("event failed; will be redelivered", { err, eventId: event.id, delayMs: delay });
      m.nak(delay);
      onOutcome("retried", event);
    }
  }

  /** Copies the message to the dead-letter stream with the reason, then terminates it. */
  async #deadLetter(m: JsMsg, log: Logger, err: unknown): Promise<void> {
    const reason = err instanceof Error ? err.message : String(err);
    const h = natsHeaders();
    for (const [key, values] of m.headers ?? []) {
      if (key === "Nats-Msg-Id") continue;
      for (const v of values) h.append(key, v);
    }
    h.set(HEADERS.deadLetterReason, reason.slice(0, 1_000).replaceAll(/[\r\n]+/g, " "));
    h.set(HEADERS.deadLetterSubject, m.subject);
    h.set(HEADERS.deadLetterStream, m.info.stream);
    h.set(HEADERS.deadLetterSequence, String(m.info.streamSequence));
    try {
      await this.#opts.js.publish(deadLetterSubject(this.#opts.prefix, m.subject), m.data, {
        headers: h,
        msgID: `dlq-${m.info.stream}-${m.info.streamSequence}`,
      });
    } catch (publishErr) {
      log.error("dead-lettering failed; will be redelivered", { err: publishErr, reason });
      m.nak(retryDelayMs(m.info.deliveryCount));
      return;
    }
    log.error("event dead-lettered", { reason });
    // No reason argument: nats-server 2.9 does not understand "+TERM <reason>" and would ignore it.
    m.term();
  }
}

/** `work`, or a HandlerTimeoutError after `ms`; the work goes on, but its result no longer counts. */
function withDeadline<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new HandlerTimeoutError(ms)), ms);
  });
  work.catch(() => {}); // a failure after the deadline has nobody left to tell
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer));
}
