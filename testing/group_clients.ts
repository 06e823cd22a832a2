/** HTTP helpers for end-to-end tests of groups, mentions, mutes and deletes (contract routes). */
import assert from "node:assert/strict";
import { bearer, call, type Service } from "./env.ts";

/** Creates a group owned by `owner` with `members`; asserts 201 and returns its id. */
export async function createGroup(
  dialogs: Service,
  owner: string,
  members: string[],
  title = "a group",
): Promise<string> {
  const res = await call(`${dialogs.url}/api/groups`, {
    auth: await bearer(owner),
    body: { title, members },
  });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  return res.body.id as string;
}

/** `by` adds `userIds` to the group; asserts 200 and returns how many were added. */
export async function addMembers(
  dialogs: Service,
  by: string,
  groupId: string,
  userIds: string[],
): Promise<number> {
  const res = await call(`${dialogs.url}/api/groups/${groupId}/members`, {
    auth: await bearer(by),
    body: { userIds },
  });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.added as number;
}

/** `by` removes `userId` from the group (itself: leaves); returns the status (204 when done). */
export async function removeMember(
  dialogs: Service,
  by: string,
  groupId: string,
  userId: string,
): Promise<number> {
  const res = await call(`${dialogs.url}/api/groups/${groupId}/members/${userId}`, {
    method: "DELETE",
    auth: await bearer(by),
  });
  return res.status;
}

/** Sends `text` to the group with `mentions`; asserts 202 and returns the response. */
export async function groupSend(
  dialogs: Service,
  from: string,
  groupId: string,
  text = "hello group",
  mentions?: string[],
  headers: Record<string, string> = {},
) {
  const res = await call(`${dialogs.url}/api/groups/${groupId}/send`, {
    auth: await bearer(from),
    body: mentions ? { text, mentions } : { text },
    headers,
  });
  assert.equal(res.status, 202, JSON.stringify(res.body));
  return res.body as { messageId: string; transactionId: string; status: string };
}

/** `reader` reads the group (up to `upTo`); asserts 200 and returns `{read, readSeq}`. */
export async function groupRead(dialogs: Service, reader: string, groupId: string, upTo?: string) {
  const res = await call(`${dialogs.url}/api/groups/${groupId}/read`, {
    method: "POST",
    auth: await bearer(reader),
    ...(upTo ? { body: { upTo } } : {}),
  });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body as { read: number; readSeq: number };
}

/** `user` deletes the message; returns status and body. */
export async function deleteMessage(dialogs: Service, user: string, messageId: string) {
  return await call(`${dialogs.url}/api/messages/${messageId}`, {
    method: "DELETE",
    auth: await bearer(user),
  });
}

/** `user` mutes or unmutes a dialog (`kind` "dialog") or a group; asserts 200. */
export async function mute(
  dialogs: Service,
  user: string,
  kind: "dialog" | "groups",
  id: string,
  muted: boolean,
): Promise<void> {
  const res = await call(`${dialogs.url}/api/${kind}/${id}/mute`, {
    method: "PUT",
    auth: await bearer(user),
    body: { muted },
  });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.deepEqual(res.body, { muted });
}

/** The full `GET /api/counters` body of `user`. */
export interface FullCounters {
  total: number;
  dialogs: Record<string, number>;
  groups?: Record<string, { unread: number; mentions: number }>;
  mentions?: number;
  muted?: string[];
}

/** `GET /api/counters` as `user`, with its group part. */
export async function fullCountersOf(counters: Service, user: string): Promise<FullCounters> {
  const res = await call(`${counters.url}/api/counters`, { auth: await bearer(user) });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body as FullCounters;
}

/** The group's unread and mentions as `GET /api/counters` serves them to `user` (0 when absent). */
export async function groupCountOf(counters: Service, user: string, groupId: string) {
  const body = await fullCountersOf(counters, user);
  const g = body.groups?.[groupId];
  return { unread: g?.unread ?? 0, mentions: g?.mentions ?? 0 };
}
