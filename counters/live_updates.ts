/**
 * Fan-out of counter changes to every counters instance over core NATS: one message per batch of
 * changes on `<prefix>_live.changes`, which every instance applies to its in-process cache and its
 * live streams and then acknowledges with its instance id, so the publisher can tell when every
 * instance has the change (counters/coherence.ts waits for that before a reply goes out).
 */
import { createInbox, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import type { Logger } from "../shared/log.ts";
import type { UserCounters } from "./counters.ts";

/** One user's new counters. */
export interface CountersChange {
  userId: string;
  counters: UserCounters;
}

/** Publishes changes to every instance and lets this instance listen for them. */
export interface LiveUpdates {
  /** This instance's id, the one its acknowledgements carry. */
  readonly instanceId: string;
  /**
   * Publishes `changes` to every instance; resolves with the ids of the instances that applied
   * them, once every id in `awaitFrom` has, or after `timeoutMs`.
   */
  publish(
    changes: CountersChange[],
    wait?: { awaitFrom: Iterable<string>; timeoutMs: number },
  ): Promise<Set<string>>;
  /** Calls `listener` with every change of any user's counters, from any instance. */
  onChange(listener: (userId: string, counters: UserCounters) => void): void;
  /** Calls `listener` with every change of `userId`'s counters seen by any instance. */
  subscribe(userId: string, listener: (counters: UserCounters) => void): () => void;
  close(): void;
}

/** The subject of counter changes; outside the saga stream's subjects, so nothing stores them. */
function liveSubject(prefix: string): string {
  return `${prefix}_live.changes`;
}

/** Subscribes once for all changes and dispatches them to this instance's listeners. */
export function createLiveUpdates(
  nc: NatsConnection,
  prefix: string,
  log: Logger,
  instanceId: string = crypto.randomUUID(),
): LiveUpdates {
  const listeners = new Map<string, Set<(counters: UserCounters) => void>>();
  const everyChange: ((userId: string, counters: UserCounters) => void)[] = [];
  const sub: Subscription = nc.subscribe(liveSubject(prefix), {
    callback: (err, msg) => {
      if (err) return log.warn("live updates subscription failed", { err });
      let changes: CountersChange[];
      try {
        changes = msg.json<CountersChange[]>();
      } catch (err) {
        return log.warn("malformed live update", { err, subject: msg.subject });
      }
      for (const { userId, counters } of changes) {
        for (const listener of everyChange) listener(userId, counters);
        for (const listener of listeners.get(userId) ?? []) listener(counters);
      }
      if (msg.reply) nc.publish(msg.reply, instanceId);
    },
  });

  // Acknowledgements come back on this instance's own inbox, one subject per publish.
  const inbox = createInbox();
  let sequence = 0;
  const waiting = new Map<string, { missing: Set<string>; acked: Set<string>; done: () => void }>();
  const acks = nc.subscribe(`${inbox}.*`, {
    callback: (err, msg) => {
      if (err) return;
      const pending = waiting.get(msg.subject);
      if (!pending) return;
      const from = msg.string();
      pending.acked.add(from);
      pending.missing.delete(from);
      if (pending.missing.size === 0) pending.done();
    },
  });

  return {
    instanceId,
    publish(changes, wait) {
      if (changes.length === 0) return Promise.resolve(new Set());
      const missing = new Set(wait?.awaitFrom ?? []);
      missing.delete(instanceId);
      if (!wait || missing.size === 0) {
        nc.publish(liveSubject(prefix), JSON.stringify(changes));
        return Promise.resolve(new Set());
      }
      const reply = `${inbox}.${++sequence}`;
      const acked = new Set<string>();
      return new Promise((resolve) => {
        const timer = setTimeout(done, wait.timeoutMs);
        function done() {
          clearTimeout(timer);
          waiting.delete(reply);
          resolve(acked);
        }
        waiting.set(reply, { missing, acked, done });
        nc.publish(liveSubject(prefix), JSON.stringify(changes), { reply });
      });
    },
    onChange(listener) {
      everyChange.push(listener);
    },
    subscribe(userId, listener) {
      let set = listeners.get(userId);
      if (!set) listeners.set(userId, set = new Set());
      set.add(listener);
      return () => {
        set.delete(listener);
        if (set.size === 0) listeners.delete(userId);
      };
    },
    close() {
      sub.unsubscribe();
      acks.unsubscribe();
      for (const pending of waiting.values()) pending.done();
      listeners.clear();
    },
  };
}
