/**
 * What one live stream follows: the caller's state and each of its groups' states, each kept at
 * its newest version (never an older one), composed into the counters body whenever the composed
 * version goes up. The stream listens to the user's key and to each group's key, and follows the
 * user's groups as they change (joins subscribe, leaves unsubscribe). A group's live update
 * arrives once per instance and reaches every member's stream there in process.
 */
import { type CachedState, groupKey, userKey } from "./cache_keys.ts";
import type { CoherentCounters } from "./coherence.ts";
import {
  composedVersion,
  countersJson,
  type GroupCounters,
  type GroupLookup,
  type UserCounters,
} from "./counters.ts";

/** One `counters` event: the composed version (its id) and the body as JSON. */
export interface CountersEvent {
  version: number;
  json: string;
}

/** A running follow of one user's counters. */
export interface CountersFollow {
  /** Resolves once the first event was handed to `send`; rejects when the first read fails. */
  readonly started: Promise<void>;
  /** Rejects when a later step fails (a group's state could not be read): the stream should end. */
  readonly failed: Promise<never>;
  /** Stops listening; nothing is sent after it. */
  stop(): void;
}

/** Follows `userId`'s counters and hands each new composed version to `send`, one at a time. */
export function followCounters(
  reader: Pick<CoherentCounters, "read" | "readGroups" | "subscribe">,
  userId: string,
  send: (event: CountersEvent) => Promise<void>,
): CountersFollow {
  let user: UserCounters | undefined;
  const groups = new Map<string, GroupCounters>();
  const groupSubscriptions = new Map<string, () => void>();
  const lookup: GroupLookup = (groupId) => groups.get(groupId);
  let lastSent = -1;
  let stopped = false;
  let isStarted = false;
  let startError: unknown;
  let steps = Promise.resolve();
  let fail: (err: unknown) => void = () => {};
  const failed = new Promise<never>((_, reject) => fail = reject);
  failed.catch(() => {});

  const offerUser = (state: UserCounters) => {
    if (user !== undefined && state.version <= user.version) return;
    user = state;
    schedule();
  };
  const offerGroup = (groupId: string, state: GroupCounters) => {
    if (!groupSubscriptions.has(groupId)) return;
    const held = groups.get(groupId);
    if (held !== undefined && state.version <= held.version) return;
    groups.set(groupId, state);
    schedule();
  };

  /**
   * Steps run one after another, so events leave in order and each sees the newest parts. A step
   * that fails before the first event fails `started`; one after it fails `failed`.
   */
  function schedule(): void {
    steps = steps.then(step).catch((err) => {
      if (isStarted) fail(err);
      else startError ??= err;
    });
  }

  async function step(): Promise<void> {
    if (stopped || user === undefined) return;
    const current = user;
    await followGroups(Object.keys(current.groups ?? {}));
    if (stopped || user !== current) return; // a newer user state came meanwhile: its step follows
    const version = composedVersion(current, lookup);
    if (version <= lastSent) return;
    lastSent = version;
    await send({ version, json: countersJson(current, lookup) });
  }

  /**
   * Listens to exactly these groups. A new group is subscribed before its state is read, so a
   * change between the two is not missed; a group left is dropped with its state.
   */
  async function followGroups(groupIds: string[]): Promise<void> {
    const wanted = new Set(groupIds);
    for (const [groupId, unsubscribe] of groupSubscriptions) {
      if (wanted.has(groupId)) continue;
      unsubscribe();
      groupSubscriptions.delete(groupId);
      groups.delete(groupId);
    }
    for (const groupId of groupIds) {
      if (groupSubscriptions.has(groupId)) continue;
      groupSubscriptions.set(
        groupId,
        reader.subscribe(
          groupKey(groupId),
          (state: CachedState) => offerGroup(groupId, state as GroupCounters),
        ),
      );
    }
    const unknown = groupIds.filter((groupId) => !groups.has(groupId));
    if (unknown.length === 0) return;
    const states = await reader.readGroups(unknown);
    for (const [i, groupId] of unknown.entries()) {
      const held = groups.get(groupId);
      if (held === undefined || states[i]!.version > held.version) groups.set(groupId, states[i]!);
    }
  }

  // The user's key is subscribed before the first read, so a change between the two is not missed.
  const unsubscribeUser = reader.subscribe(
    userKey(userId),
    (state: CachedState) => offerUser(state as UserCounters),
  );
  const stop = () => {
    stopped = true;
    unsubscribeUser();
    for (const unsubscribe of groupSubscriptions.values()) unsubscribe();
    groupSubscriptions.clear();
  };
  const started = (async () => {
    const first = await reader.read(userId);
    offerUser(first.user);
    await steps;
    if (startError !== undefined) throw startError;
    isStarted = true;
  })();
  return { started, failed, stop };
}
