/** HTTP helpers for end-to-end tests: send, read, poll a message's status, read counters. */
import assert from "node:assert/strict";
import { bearer, call, type Service, waitFor } from "./env.ts";

/** Sends `text` from `from` to `to`; asserts 202 and returns the response. */
export async function send(
  dialogs: Service,
  from: string,
  to: string,
  text = "hello",
  headers: Record<string, string> = {},
) {
  const res = await call(`${dialogs.url}/api/dialog/${to}/send`, {
    auth: await bearer(from),
    body: { text },
    headers,
  });
  assert.equal(res.status, 202, JSON.stringify(res.body));
  return res;
}

/** Marks `reader`'s dialog with `peer` read (up to `upTo`); asserts 200 and returns the count. */
export async function markRead(dialogs: Service, reader: string, peer: string, upTo?: string) {
  const res = await call(`${dialogs.url}/api/dialog/${peer}/read`, {
    method: "POST",
    auth: await bearer(reader),
    ...(upTo ? { body: { upTo } } : {}),
  });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.read as number;
}

/** The message's status as `user` sees it, or undefined when hidden. */
export async function statusOf(dialogs: Service, user: string, messageId: string) {
  const res = await call(`${dialogs.url}/api/messages/${messageId}`, { auth: await bearer(user) });
  return res.status === 200 ? res.body.status as string : undefined;
}

/** Waits until the sender sees the message in `status`. */
export async function waitForStatus(
  dialogs: Service,
  user: string,
  messageId: string,
  status: string,
  timeoutMs = 10_000,
) {
  await waitFor(async () => (await statusOf(dialogs, user, messageId)) === status, {
    timeoutMs,
    what: `message ${messageId} to be ${status}`,
  });
}

/** `GET /api/counters` as `user`. */
export async function countersOf(service: Service, user: string) {
  const res = await call(`${service.url}/api/counters`, { auth: await bearer(user) });
  assert.equal(res.status, 200);
  return res.body as { total: number; dialogs: Record<string, number> };
}

/** The body of GET /api/counters for a user in no group, muting nothing. */
export function withNoGroups(body: { total: number; dialogs: Record<string, number> }) {
  return { ...body, groups: {}, mentions: 0, muted: [] as string[] };
}
