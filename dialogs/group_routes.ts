/** The group routes of the dialogs API: create, show, members, send, list, read and mute. */
import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { AppError, badRequest, notFound } from "../shared/errors.ts";
import type { AppEnv } from "../shared/http/app_env.ts";
import { COMMON_PROBLEMS, problemDoc } from "../shared/openapi.ts";
import { uniqueIds } from "./group_store.ts";
import type { MessageStore } from "./message_store.ts";
import { canSee, type MessageRow, sendAnswer, toGroupMessageView } from "./messages.ts";
import {
  AddMembers,
  Before,
  CreateGroup,
  GroupMessageList,
  GroupParam,
  GroupReadCount,
  GroupView,
  GroupWithMe,
  IdempotencyHeader,
  Limit,
  MarkRead,
  MemberParam,
  MembersAdded,
  Mute,
  SendAccepted,
  SendGroupMessage,
} from "./schemas.ts";

/** What the group routes need. */
export interface GroupRoutesDeps {
  store: MessageStore;
  /** Most members a group may have, counting its owner (MAX_GROUP_MEMBERS). */
  maxGroupMembers: number;
}

const json = <T>(schema: T) => ({ "application/json": { schema } });
const secured = { security: [{ bearer: [] }] };
const notMember = problemDoc("No such group, or the caller is not a member");

const createGroupRoute = createRoute({
  method: "post",
  path: "/api/groups",
  summary: "Create a group; the caller becomes its owner and a member",
  ...secured,
  request: { body: { required: true, content: json(CreateGroup) } },
  responses: {
    201: { description: "Created", content: json(GroupView) },
    ...COMMON_PROBLEMS,
    413: problemDoc("Body over 64 KiB"),
  },
});

const groupRoute = createRoute({
  method: "get",
  path: "/api/groups/{groupId}",
  summary: "A group with the caller's place in it (members only)",
  ...secured,
  request: { params: GroupParam },
  responses: {
    200: { description: "The group", content: json(GroupWithMe) },
    ...COMMON_PROBLEMS,
    404: notMember,
  },
});

const addMembersRoute = createRoute({
  method: "post",
  path: "/api/groups/{groupId}/members",
  summary: "A member adds users; messages committed before they join never count for them",
  ...secured,
  request: { params: GroupParam, body: { required: true, content: json(AddMembers) } },
  responses: {
    200: { description: "How many joined", content: json(MembersAdded) },
    ...COMMON_PROBLEMS,
    404: notMember,
    413: problemDoc("Body over 64 KiB"),
  },
});

const removeMemberRoute = createRoute({
  method: "delete",
  path: "/api/groups/{groupId}/members/{userId}",
  summary: "A member leaves (its own id), or the owner removes a member",
  ...secured,
  request: { params: MemberParam },
  responses: {
    204: { description: "Removed" },
    ...COMMON_PROBLEMS,
    403: problemDoc("Only the owner removes other members"),
    404: problemDoc("No such group for the caller, or the user is not a member"),
  },
});

const sendGroupRoute = createRoute({
  method: "post",
  path: "/api/groups/{groupId}/send",
  summary: "Send a message to a group; it stays pending until counters has counted it",
  ...secured,
  request: {
    params: GroupParam,
    headers: IdempotencyHeader,
    body: { required: true, content: json(SendGroupMessage) },
  },
  responses: {
    202: { description: "Accepted", content: json(SendAccepted) },
    ...COMMON_PROBLEMS,
    404: notMember,
    413: problemDoc("Body over 64 KiB"),
    422: problemDoc("Idempotency-Key reused for another request"),
  },
});

const listGroupRoute = createRoute({
  method: "get",
  path: "/api/groups/{groupId}/list",
  summary: "The group's messages, newest first: committed ones, and the caller's own in any status",
  ...secured,
  request: { params: GroupParam, query: z.object({ limit: Limit, before: Before }) },
  responses: {
    200: { description: "Messages", content: json(GroupMessageList) },
    ...COMMON_PROBLEMS,
    404: problemDoc("Not a member, or `before` names no message of this group"),
  },
});

const readGroupRoute = createRoute({
  method: "post",
  path: "/api/groups/{groupId}/read",
  summary: "Move the caller's read position forward to `upTo` (everything without it)",
  ...secured,
  request: { params: GroupParam, body: { required: false, content: json(MarkRead) } },
  responses: {
    200: { description: "How many unread messages it covered", content: json(GroupReadCount) },
    ...COMMON_PROBLEMS,
    404: problemDoc("Not a member, or `upTo` names no message of this group"),
  },
});

const muteGroupRoute = createRoute({
  method: "put",
  path: "/api/groups/{groupId}/mute",
  summary: "Mute or unmute a group: its unread leave `total`",
  ...secured,
  request: { params: GroupParam, body: { required: true, content: json(Mute) } },
  responses: {
    200: { description: "The mute", content: json(Mute) },
    ...COMMON_PROBLEMS,
    404: notMember,
  },
});

/** The group with the caller's place in it; 404 when the caller is not a member. */
async function memberGroup(store: MessageStore, groupId: string, userId: string) {
  const group = await store.findGroup(groupId, userId);
  if (!group) throw notFound(`no group ${groupId}`);
  return group;
}

/** The message `id` of the group as its member `userId` may see it; 404 otherwise. */
async function messageInGroup(
  store: MessageStore,
  userId: string,
  groupId: string,
  id: string,
): Promise<MessageRow> {
  const row = await store.findMessage(id);
  if (!row || row.group_id !== groupId || !canSee(row, userId, true)) {
    throw notFound(`no message ${id} in this group`);
  }
  return row;
}

/** Mounts the group routes on `app` (behind the /api bearer auth mounted by mountDialogsRoutes). */
export function mountGroupRoutes(app: OpenAPIHono<AppEnv>, deps: GroupRoutesDeps): void {
  const { store, maxGroupMembers } = deps;

  app.openapi(createGroupRoute, async (c) => {
    const userId = c.get("userId");
    const { title, members } = c.req.valid("json");
    const count = uniqueIds([userId, ...members]).length;
    if (count > maxGroupMembers) {
      throw badRequest(`a group has at most ${maxGroupMembers} members, counting its owner`, [
        { path: "members", message: `${count} members with the owner; at most ${maxGroupMembers}` },
      ]);
    }
    const group = await store.createGroup({
      ownerId: userId,
      title,
      members,
      requestId: c.get("requestId"),
    });
    return c.json({
      id: group.id,
      title: group.title,
      memberCount: group.member_count,
      createdAt: group.created_at.toISOString(),
    }, 201);
  });

  app.openapi(groupRoute, async (c) => {
    const { groupId } = c.req.valid("param");
    const group = await memberGroup(store, groupId.toLowerCase(), c.get("userId"));
    return c.json({
      id: group.id,
      title: group.title,
      memberCount: group.member_count,
      createdAt: group.created_at.toISOString(),
      me: group.me,
    }, 200);
  });

  app.openapi(addMembersRoute, async (c) => {
    const groupId = c.req.valid("param").groupId.toLowerCase();
    const result = await store.addMembers({
      groupId,
      actorId: c.get("userId"),
      userIds: c.req.valid("json").userIds,
      maxMembers: maxGroupMembers,
      requestId: c.get("requestId"),
    });
    if (result.kind === "not_found") throw notFound(`no group ${groupId}`);
    if (result.kind === "too_many") {
      throw badRequest(`a group has at most ${maxGroupMembers} members`, [
        { path: "userIds", message: `the group would have ${result.memberCount} members` },
      ]);
    }
    return c.json({ added: result.added }, 200);
  });

  app.openapi(removeMemberRoute, async (c) => {
    const { groupId, userId } = c.req.valid("param");
    const result = await store.removeMember({
      groupId: groupId.toLowerCase(),
      actorId: c.get("userId"),
      userId: userId.toLowerCase(),
      requestId: c.get("requestId"),
    });
    if (result === "not_found") throw notFound(`no member ${userId} in group ${groupId}`);
    if (result === "forbidden") {
      throw new AppError(403, "forbidden", "only the owner removes other members");
    }
    return c.body(null, 204);
  });

  app.openapi(sendGroupRoute, async (c) => {
    const groupId = c.req.valid("param").groupId.toLowerCase();
    const { text, mentions } = c.req.valid("json");
    const result = await store.sendGroupMessage({
      senderId: c.get("userId"),
      groupId,
      text,
      mentions,
      idempotencyKey: c.req.valid("header")["idempotency-key"],
      requestId: c.get("requestId"),
    });
    if (result.kind === "not_found") throw notFound(`no group ${groupId}`);
    if (result.kind === "not_members") {
      throw badRequest(
        "only members can be mentioned",
        result.userIds.map((id) => ({ path: "mentions", message: `${id} is not a member` })),
      );
    }
    const { message, created } = result;
    const sameRequest = created || (message.group_id === groupId && message.text === text);
    return c.json(sendAnswer(message, sameRequest), 202);
  });

  app.openapi(listGroupRoute, async (c) => {
    const userId = c.get("userId");
    const groupId = c.req.valid("param").groupId.toLowerCase();
    const { limit, before } = c.req.valid("query");
    await memberGroup(store, groupId, userId);
    const cursor = before ? await messageInGroup(store, userId, groupId, before) : undefined;
    const rows = await store.listGroup(userId, groupId, { limit, before: cursor });
    return c.json({ messages: rows.map(toGroupMessageView) }, 200);
  });

  app.openapi(readGroupRoute, async (c) => {
    const userId = c.get("userId");
    const groupId = c.req.valid("param").groupId.toLowerCase();
    const { upTo } = c.req.valid("json");
    await memberGroup(store, groupId, userId);
    const cursor = upTo ? await messageInGroup(store, userId, groupId, upTo) : undefined;
    const result = await store.markGroupRead({
      readerId: userId,
      groupId,
      upTo: cursor,
      requestId: c.get("requestId"),
    });
    if (!result) throw notFound(`no group ${groupId}`);
    return c.json(result, 200);
  });

  app.openapi(muteGroupRoute, async (c) => {
    const groupId = c.req.valid("param").groupId.toLowerCase();
    const { muted } = c.req.valid("json");
    const done = await store.muteGroup({
      userId: c.get("userId"),
      targetId: groupId,
      muted,
      requestId: c.get("requestId"),
    });
    if (!done) throw notFound(`no group ${groupId}`);
    return c.json({ muted }, 200);
  });
}
