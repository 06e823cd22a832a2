/** The group, delete and mute routes through app.request() on an in-memory store: answers and refusals. */
import assert from "node:assert/strict";
import { createBaseApp } from "../shared/http/base_app.ts";
import { createLogger } from "../shared/log.ts";
import { createMetrics } from "../shared/metrics.ts";
import { bearer, call, TEST_JWT_SECRET } from "../testing/env.ts";
import { memoryMessageStore } from "../testing/memory_store.ts";
import { mountDialogsRoutes } from "./app.ts";

const uuid = () => crypto.randomUUID();

function groupsApp(maxGroupMembers = 5) {
  const store = memoryMessageStore();
  const app = createBaseApp({
    service: "dialogs",
    log: createLogger("dialogs", "error", () => {}),
    metrics: createMetrics(),
  });
  mountDialogsRoutes(app, { store, jwtSecret: TEST_JWT_SECRET, maxGroupMembers });
  /** Calls as `userId`. */
  const as = (userId: string) => async (path: string, init: Parameters<typeof call>[1] = {}) =>
    call(path, { ...init, auth: await bearer(userId) }, app.request);
  return { store, as };
}

function assertProblem(res: Awaited<ReturnType<typeof call>>, status: number) {
  assert.equal(res.status, status, JSON.stringify(res.body));
  assert.equal(res.headers.get("Content-Type"), "application/problem+json");
  assert.equal(res.body.status, status);
  return res.body;
}

Deno.test("POST /api/groups creates a group of the owner and its members, each once", async () => {
  const { as } = groupsApp();
  const [owner, bob] = [uuid(), uuid()];
  const created = await as(owner)("/api/groups", {
    body: { title: "Team", members: [bob, bob.toUpperCase(), owner] },
  });
  assert.equal(created.status, 201);
  assert.deepEqual(Object.keys(created.body).sort(), ["createdAt", "id", "memberCount", "title"]);
  assert.deepEqual([created.body.title, created.body.memberCount], ["Team", 2]);
  const shown = await as(bob)(`/api/groups/${created.body.id}`);
  assert.deepEqual(shown.body, {
    ...created.body,
    me: { joinedSeq: 0, readSeq: 0, muted: false },
  });
  assertProblem(await as(uuid())(`/api/groups/${created.body.id}`), 404);
});

Deno.test("POST /api/groups refuses a bad title, a bad id and too many members with 400", async () => {
  const { as, store } = groupsApp(3);
  const me = uuid();
  for (
    const body of [
      { title: "", members: [] },
      { title: "x".repeat(201) },
      { title: "ok", members: ["nope"] },
      { title: "ok", members: [uuid(), uuid(), uuid()] },
      { members: [] },
    ]
  ) {
    assertProblem(await as(me)("/api/groups", { body }), 400);
  }
  const full = await as(me)("/api/groups", { body: { title: "ok", members: [uuid(), uuid()] } });
  assert.equal(full.status, 201, "three with the owner is the most");
  assertProblem(await as(me)("/api/groups/nope"), 400);
  assertProblem(
    await as(me)(`/api/groups`, {
      body: JSON.stringify({ title: "t" }),
      headers: { "Content-Type": "text/plain" },
    }),
    415,
  );
  assertProblem(
    await as(me)("/api/groups", { body: { title: "t", members: [], pad: "x".repeat(70_000) } }),
    413,
  );
  assert.equal(store.messages.length, 0);
});

Deno.test("group members: a member adds, the owner removes, a member leaves; others get 403 or 404", async () => {
  const { as } = groupsApp(4);
  const [owner, bob, carol, dave, stranger] = [uuid(), uuid(), uuid(), uuid(), uuid()];
  const { body: g } = await as(owner)("/api/groups", { body: { title: "t", members: [bob] } });
  const members = `/api/groups/${g.id}/members`;
  assert.deepEqual((await as(bob)(members, { body: { userIds: [carol, carol, owner] } })).body, {
    added: 1,
  });
  assertProblem(await as(bob)(members, { body: { userIds: [uuid(), uuid()] } }), 400);
  assertProblem(await as(stranger)(members, { body: { userIds: [dave] } }), 404);
  assertProblem(await as(bob)(members, { body: { userIds: [] } }), 400);
  assertProblem(await as(bob)(members, { body: { userIds: ["nope"] } }), 400);
  assertProblem(await as(bob)(`${members}/${carol}`, { method: "DELETE" }), 403);
  assertProblem(await as(stranger)(`${members}/${carol}`, { method: "DELETE" }), 404);
  assertProblem(await as(owner)(`${members}/${stranger}`, { method: "DELETE" }), 404);
  assertProblem(await as(owner)(`${members}/nope`, { method: "DELETE" }), 400);
  assert.equal((await as(owner)(`${members}/${carol}`, { method: "DELETE" })).status, 204);
  assert.equal((await as(bob)(`${members}/${bob}`, { method: "DELETE" })).status, 204);
  assertProblem(await as(bob)(`/api/groups/${g.id}`), 404);
  assertProblem(await as(carol)(`/api/groups/${g.id}/list`), 404);
  assert.equal((await as(owner)(`/api/groups/${g.id}`)).body.memberCount, 1);
});

Deno.test("group send: members send with mentions; a non-member mention is 400, a non-member 404", async () => {
  const { as, store } = groupsApp();
  const [owner, bob, stranger] = [uuid(), uuid(), uuid()];
  const { body: g } = await as(owner)("/api/groups", { body: { title: "t", members: [bob] } });
  const send = `/api/groups/${g.id}/send`;
  const sent = await as(owner)(send, { body: { text: "hi", mentions: [bob, "all", owner] } });
  assert.equal(sent.status, 202);
  assert.deepEqual(sent.body, {
    messageId: sent.body.messageId,
    transactionId: store.messages[0]!.transaction_id,
    status: "pending",
  });
  const problem = assertProblem(
    await as(owner)(send, { body: { text: "hi", mentions: [stranger] } }),
    400,
  );
  assert.deepEqual(problem.errors, [{ path: "mentions", message: `${stranger} is not a member` }]);
  assertProblem(await as(owner)(send, { body: { text: "hi", mentions: ["everyone"] } }), 400);
  assertProblem(await as(owner)(send, { body: { text: "" } }), 400);
  assertProblem(await as(stranger)(send, { body: { text: "hi" } }), 404);
  assertProblem(await as(owner)(`/api/groups/${uuid()}/send`, { body: { text: "hi" } }), 404);
  assert.equal(store.messages.length, 1);

  const headers = { "Idempotency-Key": "k1" };
  const first = await as(bob)(send, { body: { text: "once" }, headers });
  assert.deepEqual((await as(bob)(send, { body: { text: "once" }, headers })).body, first.body);
  assertProblem(await as(bob)(send, { body: { text: "other" }, headers }), 422);
  assert.equal(store.messages.length, 2);
});

Deno.test("group list and GET message: members see committed ones, the sender its own in every status", async () => {
  const { as, store } = groupsApp();
  const [owner, bob, carol] = [uuid(), uuid(), uuid()];
  const { body: g } = await as(owner)("/api/groups", { body: { title: "t", members: [bob] } });
  const send = async (text: string) =>
    (await as(owner)(`/api/groups/${g.id}/send`, { body: { text, mentions: ["all"] } })).body
      .messageId;
  const [first, second, third] = [await send("one"), await send("two"), await send("three")];
  store.setStatus(first, "committed");
  store.setStatus(third, "committed");
  store.setStatus(second, "failed");
  await as(owner)(`/api/groups/${g.id}/members`, { body: { userIds: [carol] } });
  const list = (user: string, q = "") => as(user)(`/api/groups/${g.id}/list${q}`);
  const texts = (res: Awaited<ReturnType<typeof call>>) =>
    res.body.messages.map((m: { text: string }) => m.text);
  assert.deepEqual(texts(await list(owner)), ["three", "two", "one"]);
  assert.deepEqual(texts(await list(carol)), ["three", "one"], "also from before carol joined");
  assert.deepEqual(texts(await list(owner, "?limit=1")), ["three"]);
  assert.deepEqual(texts(await list(owner, `?before=${second}`)), ["one"]);
  assertProblem(await list(carol, `?before=${second}`), 404);
  assertProblem(await list(carol, "?limit=0"), 400);

  const view = (await as(carol)(`/api/messages/${third}`)).body;
  assert.deepEqual(view, {
    id: third,
    from: owner,
    groupId: g.id,
    text: "three",
    status: "committed",
    seq: 2,
    mentions: ["all"],
    createdAt: view.createdAt,
  });
  assert.equal((await as(owner)(`/api/messages/${second}`)).body.seq, null);
  assertProblem(await as(bob)(`/api/messages/${second}`), 404);
  assertProblem(await as(uuid())(`/api/messages/${third}`), 404);
});

Deno.test("group read moves readSeq forward only and counts what it covered", async () => {
  const { as, store } = groupsApp();
  const [owner, bob] = [uuid(), uuid()];
  const { body: g } = await as(owner)("/api/groups", { body: { title: "t", members: [bob] } });
  const ids = [];
  for (const text of ["a", "b", "c"]) {
    const id = (await as(owner)(`/api/groups/${g.id}/send`, { body: { text } })).body.messageId;
    store.setStatus(id, "committed");
    ids.push(id);
  }
  const read = `/api/groups/${g.id}/read`;
  assert.deepEqual((await as(bob)(read, { body: { upTo: ids[1] } })).body, { read: 2, readSeq: 2 });
  assert.deepEqual((await as(bob)(read, { body: { upTo: ids[0] } })).body, { read: 0, readSeq: 2 });
  assert.deepEqual((await as(bob)(read, { method: "POST" })).body, { read: 1, readSeq: 3 });
  assert.deepEqual((await as(owner)(read, { method: "POST" })).body, { read: 0, readSeq: 3 });
  assert.deepEqual((await as(bob)(`/api/groups/${g.id}`)).body.me, {
    joinedSeq: 0,
    readSeq: 3,
    muted: false,
  });
  assertProblem(await as(bob)(read, { body: { upTo: uuid() } }), 404);
  assertProblem(await as(bob)(read, { body: { upTo: "nope" } }), 400);
  assertProblem(await as(uuid())(read, { method: "POST" }), 404);
});

Deno.test("DELETE /api/messages: the sender deletes committed messages; 409 pending, 404 others", async () => {
  const { as, store } = groupsApp();
  const [a, b, owner] = [uuid(), uuid(), uuid()];
  const sent = (await as(a)(`/api/dialog/${b}/send`, { body: { text: "oops" } })).body.messageId;
  assertProblem(await as(a)(`/api/messages/${sent}`, { method: "DELETE" }), 409);
  store.setStatus(sent, "committed");
  assertProblem(await as(b)(`/api/messages/${sent}`, { method: "DELETE" }), 404);
  for (let i = 0; i < 2; i++) {
    const res = await as(a)(`/api/messages/${sent.toUpperCase()}`, { method: "DELETE" });
    assert.deepEqual([res.status, res.body], [200, { id: sent, status: "deleted" }]);
  }
  assert.equal((await as(a)(`/api/messages/${sent}`)).body.status, "deleted");
  assertProblem(await as(b)(`/api/messages/${sent}`), 404);
  assert.deepEqual((await as(a)(`/api/dialog/${b}/list`)).body, { messages: [] });
  assert.deepEqual((await as(b)("/api/dialogs")).body, { dialogs: [] });
  assertProblem(await as(a)(`/api/messages/${uuid()}`, { method: "DELETE" }), 404);
  assertProblem(await as(a)("/api/messages/nope", { method: "DELETE" }), 400);

  const { body: g } = await as(owner)("/api/groups", { body: { title: "t", members: [b] } });
  const gm = (await as(owner)(`/api/groups/${g.id}/send`, { body: { text: "x" } })).body.messageId;
  store.setStatus(gm, "committed");
  assert.equal((await as(owner)(`/api/messages/${gm}`, { method: "DELETE" })).status, 200);
  assertProblem(await as(b)(`/api/messages/${gm}`), 404);
  assert.deepEqual((await as(b)(`/api/groups/${g.id}/list`)).body, { messages: [] });
});

Deno.test("PUT mute answers the mute for a dialog and a group; refuses bad bodies and strangers", async () => {
  const { as } = groupsApp();
  const [me, peer] = [uuid(), uuid()];
  const put = (user: string, path: string, body: unknown) =>
    as(user)(path, { method: "PUT", body });
  assert.deepEqual((await put(me, `/api/dialog/${peer}/mute`, { muted: true })).body, {
    muted: true,
  });
  assertProblem(await put(me, `/api/dialog/${me}/mute`, { muted: true }), 400);
  assertProblem(await put(me, `/api/dialog/${peer}/mute`, { muted: "yes" }), 400);
  assertProblem(await put(me, `/api/dialog/nope/mute`, { muted: true }), 400);
  const { body: g } = await as(me)("/api/groups", { body: { title: "t" } });
  assert.deepEqual((await put(me, `/api/groups/${g.id}/mute`, { muted: true })).body, {
    muted: true,
  });
  assert.equal((await as(me)(`/api/groups/${g.id}`)).body.me.muted, true);
  assertProblem(await put(peer, `/api/groups/${g.id}/mute`, { muted: true }), 404);
  assertProblem(await put(me, `/api/groups/${g.id}/mute`, {}), 400);
});

Deno.test("GET /api/dialogs lists dialogs and groups together, most recent activity first", async () => {
  const { as, store } = groupsApp();
  const [me, peer] = [uuid(), uuid()];
  const { body: quiet } = await as(me)("/api/groups", { body: { title: "quiet" } });
  const dm = (await as(me)(`/api/dialog/${peer}/send`, { body: { text: "dm" } })).body.messageId;
  const { body: busy } = await as(peer)("/api/groups", { body: { title: "busy", members: [me] } });
  const gm = (await as(peer)(`/api/groups/${busy.id}/send`, { body: { text: "gm" } })).body
    .messageId;
  store.setStatus(gm, "committed");
  const { body } = await as(me)("/api/dialogs");
  assert.deepEqual(
    body.dialogs.map((
      d: { peerId?: string; groupId?: string; lastMessage: { id: string } | null },
    ) => [
      d.peerId ?? d.groupId,
      d.lastMessage?.id ?? null,
    ]),
    [[busy.id, gm], [peer, dm], [quiet.id, null]],
  );
  assert.equal(body.dialogs[0].title, "busy");
  assert.equal((await as(me)("/api/dialogs?limit=2")).body.dialogs.length, 2);
});
