/**
 * Fan-out of counter changes to every counters instance over core NATS: one message per batch of
 * changed cache keys (`user:<id>`, `group:<id>`) with their new states on `<prefix>_live.changes`, which every instance applies to its in-process cache and its
 * live streams and then acknowledges with its instance id, so the publisher can tell when every
 * instance has the change (counters/coherence.ts waits for that before a reply goes out).
 */
import { createInbox, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import type { Logger } from "../shared/log.ts";
import type { CachedState } from "./cache_keys.ts";
import type { CacheEntry } from "./redis_cache.ts";

/** Publishes changes to every instance and lets this instance listen for them. */
export interface LiveUpdates {
  /** This instance's id, the one its acknowledgements carry. */
  readonly instanceId: string;
  /**
   * Publishes `changes` to every instance; resolves with the ids of the instances that applied
   * them, once every id in `awaitFrom` has, or after `timeoutMs`.
   */
  publish(
    changes: CacheEntry[],
    wait?: { awaitFrom: Iterable<string>; timeoutMs: number },
  ): Promise<Set<string>>;
  /** Calls `listener` with every change of any key's state, from any instance. */
  onChange(listener: (key: string, state: CachedState) => void): void;
  /**
   * Calls `listener` with every change of `key`'s state, from any instance; one update of a key
   * reaches every listener of it in this process (a group's reaches each of its members' streams).
   */
  subscribe(key: string, listener: (state: CachedState) => void): () => void;
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
  const listeners = new Map<string, Set<(state: CachedState) => void>>();
  const everyChange: ((key: string, state: CachedState) => void)[] = [];
  const sub: Subscription = nc.subscribe(liveSubject(prefix), {
    callback: (err, msg) => {
      if (err) return log.warn("live updates subscription failed", { err });
      let changes: CacheEntry[];
      try {
        changes = msg.json<CacheEntry[]>();
      } catch (err) {
        return log.warn("malformed live update", { err, subject: msg.subject });
      }
      for (const { key, state } of changes) {
        for (const listener of everyChange) listener(key, state);
        for (const listener of listeners.get(key) ?? []) listener(state);
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
    subscribe(key, listener) {
      let set = listeners.get(key);
      if (!set) listeners.set(key, set = new Set());
      set.add(listener);
      return () => {
        set.delete(listener);
        if (set.size === 0 && listeners.get(key) === set) listeners.delete(key);
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
