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
  /**
   * Hands `changes` to this instance's subscribers (subscribe()) at once, before any instance has
   * heard of them; their live update, published after, reaches them again (a version they hold).
   * onChange() listeners hear of them only through the live update.
   */
  deliverHere(changes: CacheEntry[]): void;
  /** Calls `listener` with every change of any key's state, from any instance. */
  onChange(listener: (key: string, state: CachedState) => void): void;
  /**
   * Calls `listener` with a key whose new state was too large for one NATS message: only its key
   * travelled, and whatever this instance holds of it is stale.
   */
  onTooLarge(listener: (key: string) => void): void;
  /**
   * Calls `listener` with every change of `key`'s state, from any instance; one update of a key
   * reaches every listener of it in this process (a group's reaches each of its members' streams).
   */
  subscribe(key: string, listener: (state: CachedState) => void): () => void;
  close(): void;
}

/** A change as it travels: the new state, or null when it was too large to travel. */
type LiveEntry = { key: string; state: CachedState | null };

/** Most bytes of one live update message: well under NATS' max_payload (1 MiB by default). */
export const LIVE_MESSAGE_BYTES = 256 * 1024;

/** The most one message may carry on this connection. */
function maxPayload(nc: NatsConnection): number {
  const server = nc.info?.max_payload ?? 1024 * 1024;
  return Math.min(LIVE_MESSAGE_BYTES, server);
}

/**
 * Packs `changes` into JSON messages of at most `limit` bytes each, in order. A state larger than
 * that alone (a user in thousands of groups) travels as its key only ({state: null}): the
 * receivers drop what they hold instead of serving it stale.
 */
export function packMessages(changes: CacheEntry[], limit: number, log?: Logger): string[] {
  const messages: string[] = [];
  let parts: string[] = [];
  let bytes = 2;
  const flush = () => {
    if (parts.length > 0) messages.push(`[${parts.join(",")}]`);
    parts = [];
    bytes = 2;
  };
  for (const change of changes) {
    let part = JSON.stringify(change);
    if (part.length + 2 > limit) {
      log?.warn("a state is too large for one live update; its key travels alone", {
        key: change.key,
        bytes: part.length,
      });
      part = JSON.stringify({ key: change.key, state: null });
    }
    if (bytes + part.length + 1 > limit) flush();
    parts.push(part);
    bytes += part.length + 1;
  }
  flush();
  return messages;
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
  const tooLarge: ((key: string) => void)[] = [];
  /** Hands a key's new state to its subscribers. */
  const notify = (key: string, state: CachedState) => {
    const subscribers = listeners.get(key);
    if (subscribers !== undefined) { for (const listener of subscribers) listener(state); }
  };
  const sub: Subscription = nc.subscribe(liveSubject(prefix), {
    callback: (err, msg) => {
      if (err) return log.warn("live updates subscription failed", { err });
      let changes: LiveEntry[];
      try {
        changes = msg.json<LiveEntry[]>();
      } catch (err) {
        return log.warn("malformed live update", { err, subject: msg.subject });
      }
      for (const { key, state } of changes) {
        if (state === null) {
          for (const listener of tooLarge) listener(key);
          continue;
        }
        for (const listener of everyChange) listener(key, state);
        notify(key, state);
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

  function publishAcked(data: string, awaitFrom: Set<string>, timeoutMs: number) {
    const reply = `${inbox}.${++sequence}`;
    const missing = new Set(awaitFrom);
    const acked = new Set<string>();
    return new Promise<Set<string>>((resolve) => {
      const timer = setTimeout(done, timeoutMs);
      function done() {
        clearTimeout(timer);
        waiting.delete(reply);
        resolve(acked);
      }
      waiting.set(reply, { missing, acked, done });
      nc.publish(liveSubject(prefix), data, { reply });
    });
  }

  return {
    instanceId,
    publish(changes, wait) {
      if (changes.length === 0) return Promise.resolve(new Set());
      const missing = new Set(wait?.awaitFrom ?? []);
      missing.delete(instanceId);
      const messages = packMessages(changes, maxPayload(nc), log);
      if (!wait || missing.size === 0) {
        for (const data of messages) nc.publish(liveSubject(prefix), data);
        return Promise.resolve(new Set());
      }
      // An instance has the change once it has acknowledged every message of it.
      return Promise.all(messages.map((data) => publishAcked(data, missing, wait.timeoutMs)))
        .then((ackedEach) =>
          new Set([...ackedEach[0]!].filter((id) => ackedEach.every((acked) => acked.has(id))))
        );
    },
    deliverHere(changes) {
      for (const { key, state } of changes) notify(key, state);
    },
    onChange(listener) {
      everyChange.push(listener);
    },
    onTooLarge(listener) {
      tooLarge.push(listener);
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
