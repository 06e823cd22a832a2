/**
 * What the caches hold, by key: `user:<id>` holds a user's state and `group:<id>` a group's. Every
 * cache (in process, Redis, live updates) keeps each key's newest version; a user's counters are
 * composed on read from the user's state and its groups' (counters/counters.ts).
 */
import type { GroupCounters, UserCounters } from "./counters.ts";

/** A state one cache key holds; its version only goes up. */
export type CachedState = UserCounters | GroupCounters;

// The keys' spelling is counters' store's, which names the keys each change touched.
export { groupKey, userKey } from "./counter_store.ts";

/** A cache key taken apart: which kind of state, and whose. */
export interface ParsedKey {
  kind: "user" | "group";
  id: string;
}

/** Takes a cache key apart, lower-casing the id; throws on a key of no known kind. */
export function parseKey(key: string): ParsedKey {
  const colon = key.indexOf(":");
  const kind = key.slice(0, colon);
  if (colon < 0 || (kind !== "user" && kind !== "group")) {
    throw new Error(`not a counters cache key: ${key}`);
  }
  return { kind, id: key.slice(colon + 1).toLowerCase() };
}

/** `key` in its one spelling (lower-case id), so two spellings never make two entries. */
export function normalKey(key: string): string {
  const { kind, id } = parseKey(key);
  return `${kind}:${id}`;
}
