/** Fan-out of counter changes to every counters instance over core NATS, for the live stream. */
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import type { Logger } from "../shared/log.ts";
import type { UserCounters } from "./counters.ts";

/** Publishes a user's new counters and lets local streams listen for them. */
export interface LiveUpdates {
  publish(userId: string, counters: UserCounters): void;
  /** Calls `listener` with every change of any user's counters, from any instance. */
  onChange(listener: (userId: string, counters: UserCounters) => void): void;
  /** Calls `listener` with every change of `userId`'s counters seen by any instance. */
  subscribe(userId: string, listener: (counters: UserCounters) => void): () => void;
  close(): void;
}

/** The subject of one user's changes; outside the saga stream's subjects, so nothing stores them. */
function liveSubject(prefix: string, userId: string): string {
  return `${prefix}_live.counters.${userId}`;
}

/** Subscribes once for all users and dispatches to this instance's listeners. */
export function createLiveUpdates(nc: NatsConnection, prefix: string, log: Logger): LiveUpdates {
  const listeners = new Map<string, Set<(counters: UserCounters) => void>>();
  const everyChange: ((userId: string, counters: UserCounters) => void)[] = [];
  const sub: Subscription = nc.subscribe(liveSubject(prefix, "*"), {
    callback: (err, msg) => {
      if (err) return log.warn("live updates subscription failed", { err });
      const userId = msg.subject.slice(msg.subject.lastIndexOf(".") + 1);
      const forUser = listeners.get(userId);
      if (!forUser && everyChange.length === 0) return;
      let counters: UserCounters;
      try {
        counters = msg.json<UserCounters>();
      } catch (err) {
        return log.warn("malformed live update", { err, subject: msg.subject });
      }
      for (const listener of everyChange) listener(userId, counters);
      for (const listener of forUser ?? []) listener(counters);
    },
  });
  return {
    publish(userId, counters) {
      nc.publish(liveSubject(prefix, userId), JSON.stringify(counters));
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
      listeners.clear();
    },
  };
}
