/// <reference lib="dom" />
/**
 * The web page's client: sign in; dialogs and groups with live unread and `@` badges; a chat with
 * send (with mentions in groups), read, delete of one's own messages, mute and unmute; group
 * creation, adding members, leaving, and removal of a member by its owner.
 */
// Types only, from the schemas that validate and document the APIs: the bundle carries no zod.
import type { z } from "@hono/zod-openapi";
import type { CountersBody } from "../../counters/counters.ts";
import type { Problem } from "../../shared/errors.ts";
import type {
  AnyMessageView,
  DialogList,
  GroupMessageList,
  GroupMessageView,
  GroupReadCount,
  GroupView as GroupCreated,
  GroupWithMe,
  MembersAdded,
  MessageList,
  MessageStatus,
  MessageView,
  ReadCount,
  SendAccepted,
} from "../schemas.ts";

interface PageConfig {
  countersUrl: string;
  devLogin: boolean;
}

/** A group with the caller's place in it (`GET /api/groups/{id}`). */
type GroupView = z.infer<typeof GroupWithMe>;
/** One entry of `GET /api/dialogs`: a dialog or a group, with its last message. */
type ChatEntry = DialogList["dialogs"][number];
/** A page of a dialog or of a group, newest first. */
type AnyList = MessageList | z.infer<typeof GroupMessageList>;

/** A conversation: a dialog with a peer or a group. */
interface Chat {
  kind: "dialog" | "group";
  id: string;
}
/** A message as the page shows it: from the API, or a send that never reached it. */
type Shown = AnyMessageView & { reason?: string; local?: boolean };

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const state = {
  token: localStorage.getItem("token") ?? "",
  userId: "",
  config: { countersUrl: "", devLogin: false } as PageConfig,
  counters: { total: 0, dialogs: {}, groups: {}, mentions: 0, muted: [] } as CountersBody,
  chats: [] as ChatEntry[],
  open: null as Chat | null,
  group: null as GroupView | null,
  messages: [] as Shown[],
  /** Sends the API refused outright, per chat key: never stored, shown until retried. */
  refused: new Map<string, Shown[]>(),
  /** Failed messages the user sent again: not shown any more. */
  retried: new Set<string>(JSON.parse(localStorage.getItem("retried") ?? "[]") as string[]),
  /** Group members this page knows of (from creating the group and from senders), for chips. */
  members: new Map<string, Set<string>>(),
  /** A dialog's preview when its last message failed, by that message's id. */
  previews: new Map<string, string>(),
  stream: null as EventSource | null,
};

const short = (id: string) => id.slice(0, 8);
const isUuid = (s: string) =>
  /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(s);
const MENTION = /@(all|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})(?![\w-])/gi;
const FAILED_REASON = "Not delivered: it could not be counted in time, so no one got it.";

const chatKey = (chat: Chat) => `${chat.kind}:${chat.id}`;
const entryChat = (e: ChatEntry): Chat =>
  "groupId" in e ? { kind: "group", id: e.groupId } : { kind: "dialog", id: e.peerId };
const isOpen = (chat: Chat) => state.open?.kind === chat.kind && state.open.id === chat.id;
const isMuted = (chat: Chat) => (state.counters.muted ?? []).includes(chat.id);
const unreadOf = (chat: Chat) =>
  chat.kind === "dialog"
    ? state.counters.dialogs[chat.id] ?? 0
    : state.counters.groups?.[chat.id]?.unread ?? 0;
const mentionsOf = (chat: Chat) =>
  chat.kind === "group" ? state.counters.groups?.[chat.id]?.mentions ?? 0 : 0;
const chatBase = (chat: Chat) =>
  chat.kind === "dialog" ? `/api/dialog/${chat.id}` : `/api/groups/${chat.id}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The subject of a JWT, without verifying it (the services do). */
function subjectOf(token: string): string {
  try {
    const payload = JSON.parse(atob(token.split(".")[1]!.replace(/-/g, "+").replace(/_/g, "/")));
    return String(payload.sub ?? "");
  } catch {
    return "";
  }
}

/** The words of a problem+json body: its detail, and each invalid field's message. */
function problemText(body: Partial<Problem> & { errors?: { message?: string }[] }, status: number) {
  const fields = (body.errors ?? []).map((e) => e.message).filter(Boolean);
  const detail = body.detail ?? body.title ?? `request failed (${status})`;
  return fields.length && !fields.every((f) => detail.includes(f!))
    ? `${detail}: ${fields.join("; ")}`
    : detail;
}

/** A refusal of the API: the words of its problem+json body, and its status. */
class ApiError extends Error {
  constructor(message: string, readonly status: number) {
    super(message);
  }
}

async function api<T>(url: string, init: RequestInit = {}): Promise<T> {
  const res = await fetch(url, {
    ...init,
    headers: {
      Authorization: `Bearer ${state.token}`,
      ...(init.body ? { "Content-Type": "application/json" } : {}),
      ...init.headers,
    },
  });
  if (res.status === 401) {
    signOut("Your session ended; sign in again.");
    throw new Error("unauthorized");
  }
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new ApiError(problemText(body, res.status), res.status);
  return body as T;
}

/** An error in the open chat's pane. */
function showError(text: string) {
  $("error").textContent = text;
}

/** An error in the list's pane, which is the one on screen when no chat is open (phones). */
function showListError(text: string) {
  $("listerror").textContent = text;
}

// ---- sign in and out ------------------------------------------------------------------------

async function start() {
  state.config = await (await fetch("/config.json")).json();
  $("devlogin").hidden = !state.config.devLogin;
  if (state.token && subjectOf(state.token)) await signIn(state.token);
  else showSignIn();
}

function showSignIn(error = "") {
  $("signin").hidden = false;
  $("app").hidden = true;
  $("signout").hidden = true;
  $("who").textContent = "";
  $("signinerror").textContent = error;
}

async function signIn(token: string) {
  state.token = token;
  state.userId = subjectOf(token).toLowerCase();
  if (!isUuid(state.userId)) return showSignIn("That token names no user id.");
  localStorage.setItem("token", token);
  $("signin").hidden = true;
  $("app").hidden = false;
  $("signout").hidden = false;
  $("who").textContent = `you: ${short(state.userId)}`;
  $("myid").textContent = state.userId;
  try {
    await loadChats();
  } catch (err) {
    return showSignIn((err as Error).message);
  }
  openStream();
}

function signOut(reason = "") {
  state.stream?.close();
  state.stream = null;
  localStorage.removeItem("token");
  state.token = "";
  closeChat();
  showSignIn(reason);
}

/** Copies the full own user id, so it can be handed to a peer. */
async function copyId() {
  const button = $("copyid");
  try {
    await navigator.clipboard.writeText(state.userId);
  } catch {
    const range = document.createRange();
    range.selectNodeContents($("myid"));
    getSelection()?.removeAllRanges();
    getSelection()?.addRange(range);
    document.execCommand("copy");
  }
  button.textContent = "Copied";
  setTimeout(() => button.textContent = "Copy", 1_500);
}

// ---- live counters --------------------------------------------------------------------------

function openStream() {
  state.stream?.close();
  const url = `${state.config.countersUrl}/api/counters/stream?access_token=${
    encodeURIComponent(state.token)
  }`;
  const stream = new EventSource(url);
  stream.addEventListener("counters", (e) => {
    state.counters = JSON.parse((e as MessageEvent).data);
    renderCounters();
    catchUp().catch(() => {});
  });
  state.stream = stream;
}

/**
 * After a change of the counters: refresh the list and the open chat (a delete changes what it
 * shows) and, if the open chat has unread messages, read them. Counters count a message just
 * before dialogs marks it committed, so a message may not be listed yet: then ask again a few
 * times, briefly.
 */
let catchingUp = false;
let changedMeanwhile = false;
async function catchUp() {
  if (catchingUp) {
    changedMeanwhile = true;
    return;
  }
  catchingUp = true;
  try {
    do {
      changedMeanwhile = false;
      await catchUpOnce();
    } while (changedMeanwhile);
  } finally {
    catchingUp = false;
  }
}

/** One catch-up: the list, the open chat and its read, asked again briefly while behind. */
async function catchUpOnce() {
  for (let delay = 100; delay <= 3_200; delay *= 2) {
    await loadChats();
    const listed = new Set(state.chats.map((e) => entryChat(e).id));
    const counted = [
      ...Object.keys(state.counters.dialogs),
      ...Object.keys(state.counters.groups ?? {}),
    ];
    const missing = counted.some((id) => !listed.has(id));
    let unshown = false;
    const open = state.open;
    if (open) {
      try {
        await loadMessages();
        if (unreadOf(open) > 0) unshown = (await markRead()) === 0;
      } catch (err) {
        // Removed from the open group (by its owner, or on another device): it answers 404.
        if (open.kind !== "group" || (err as ApiError).status !== 404) throw err;
        leftGroup(open.id, "You are no longer a member of that group.");
      }
    }
    if (!missing && !unshown) return;
    await sleep(delay);
  }
}

/** One badge: its count, hidden at 0, grey when the chat is muted. */
function setBadge(badge: HTMLElement, text: string, n: number, muted = false) {
  badge.textContent = text;
  badge.hidden = n === 0;
  badge.classList.toggle("muted", muted);
}

function renderCounters() {
  const { total, mentions = 0 } = state.counters;
  const badge = $("total");
  badge.textContent = String(total);
  badge.classList.toggle("zero", total === 0);
  setBadge($("mentions"), `@${mentions}`, mentions);
  document.title = total ? `(${total}) Unread` : "Unread";
  for (const li of document.querySelectorAll<HTMLElement>("#dialoglist li")) {
    const chat: Chat = li.dataset.group
      ? { kind: "group", id: li.dataset.group }
      : { kind: "dialog", id: li.dataset.peer! };
    const muted = isMuted(chat);
    const n = unreadOf(chat), at = mentionsOf(chat);
    setBadge(li.querySelector<HTMLElement>(".badge.count")!, String(n), n, muted);
    setBadge(li.querySelector<HTMLElement>(".badge.at")!, at > 1 ? `@${at}` : "@", at);
    li.querySelector<HTMLElement>(".bell")!.hidden = !muted;
    li.classList.toggle("is-muted", muted);
  }
  renderMute();
}

function renderMute() {
  const button = $("mutebtn");
  button.hidden = !state.open;
  $("membersbtn").hidden = state.open?.kind !== "group";
  if (!state.open) return;
  const muted = isMuted(state.open);
  button.textContent = muted ? "Unmute" : "Mute";
  button.classList.toggle("on", muted);
  button.title = muted ? "Muted: left out of the total" : "Leave this chat out of the total";
}

async function toggleMute() {
  const chat = state.open;
  if (!chat) return;
  const muted = !isMuted(chat);
  try {
    await api(`${chatBase(chat)}/mute`, { method: "PUT", body: JSON.stringify({ muted }) });
  } catch (err) {
    return showError((err as Error).message);
  }
  // Shown at once; the counters stream brings the total without this chat.
  const others = (state.counters.muted ?? []).filter((id) => id !== chat.id);
  state.counters = { ...state.counters, muted: muted ? [...others, chat.id] : others };
  renderCounters();
}

// ---- the list of chats ----------------------------------------------------------------------

/** "you: …" or "<sender>: …" for groups; the last message that did not fail. */
async function previewOf(entry: ChatEntry): Promise<string> {
  let last: AnyMessageView | null | undefined = entry.lastMessage;
  if (!last) return "";
  if (last.status === "failed" || last.status === "deleted") {
    const failedId = last.id;
    const held = state.previews.get(failedId);
    if (held !== undefined) return held;
    const { messages } = await api<AnyList>(`${chatBase(entryChat(entry))}/list?limit=50`);
    last = messages.find((m) => m.status !== "failed" && m.status !== "deleted");
    const text = last ? previewText(entry, last) : "";
    state.previews.set(failedId, text);
    return text;
  }
  return previewText(entry, last);
}

function previewText(entry: ChatEntry, m: AnyMessageView): string {
  const text = m.text.replace(MENTION, (_, who: string) => {
    const id = who.toLowerCase();
    return id === state.userId ? "@you" : `@${short(id)}`;
  });
  if (m.from === state.userId) return `you: ${text}`;
  return "groupId" in entry ? `${short(m.from)}: ${text}` : text;
}

async function loadChats() {
  const { dialogs } = await api<DialogList>("/api/dialogs?limit=100");
  const previews = await Promise.all(dialogs.map((e) => previewOf(e).catch(() => "")));
  state.chats = dialogs;
  $("dialoglist").replaceChildren(...dialogs.map((e, i) => chatRow(e, previews[i]!)));
  $("nodialogs").hidden = dialogs.length > 0;
  renderCounters();
}

function chatRow(entry: ChatEntry, preview: string): HTMLLIElement {
  const chat = entryChat(entry);
  const li = document.createElement("li");
  if (chat.kind === "group") li.dataset.group = chat.id;
  else li.dataset.peer = chat.id;
  li.classList.toggle("open", isOpen(chat));
  const text = document.createElement("div");
  text.className = "text";
  const name = document.createElement("div");
  name.className = "peer";
  if ("groupId" in entry) {
    name.textContent = entry.title;
    const tag = document.createElement("span");
    tag.className = "tag";
    tag.textContent = "group";
    name.append(tag);
  } else name.textContent = short(entry.peerId);
  const last = document.createElement("div");
  last.className = "last";
  last.textContent = preview || "No messages yet";
  text.append(name, last);
  const badges = document.createElement("div");
  badges.className = "row-badges";
  badges.innerHTML = '<span class="bell tag" title="Left out of the total" hidden>muted</span>' +
    '<span class="badge at" title="Mentions of you" hidden></span>' +
    '<span class="badge count" hidden></span>';
  li.append(text, badges);
  li.addEventListener("click", () => openChat(chat).catch((err) => showError(err.message)));
  return li;
}

// ---- one chat -------------------------------------------------------------------------------

async function openChat(chat: Chat) {
  state.open = { kind: chat.kind, id: chat.id.toLowerCase() };
  state.messages = [];
  readsDelay = READS_FIRST_MS;
  state.group = null;
  $("app").classList.add("in-dialog");
  $("dialogtitle").textContent = chat.kind === "dialog" ? `with ${short(state.open.id)}` : "group";
  $("compose").hidden = false;
  for (const li of document.querySelectorAll<HTMLElement>("#dialoglist li")) {
    li.classList.toggle("open", (li.dataset.peer ?? li.dataset.group) === state.open.id);
  }
  showError("");
  showListError("");
  resetGroupPanel(false);
  renderMessages();
  renderMute();
  if (chat.kind === "group") await loadGroup(state.open.id);
  renderChips();
  await loadMessages();
  await markRead();
  $("text").focus();
}

function closeChat() {
  state.open = null;
  state.group = null;
  $("app").classList.remove("in-dialog");
  $("compose").hidden = true;
  $("chips").hidden = true;
  resetGroupPanel(false);
  $("dialogtitle").textContent = "Pick a chat";
  renderMute();
}

async function loadGroup(groupId: string) {
  const group = await api<GroupView>(`/api/groups/${groupId}`);
  if (state.open?.id !== groupId) return;
  state.group = group;
  const members = group.memberCount === 1 ? "1 member" : `${group.memberCount} members`;
  $("dialogtitle").textContent = `${group.title} · ${members}`;
}

/** Loads the open chat's newest messages and shows them. */
async function loadMessages() {
  const chat = state.open;
  if (!chat) return;
  const { messages } = await api<AnyList>(`${chatBase(chat)}/list?limit=100`);
  if (!state.open || !isOpen(chat)) return;
  state.messages = messages.reverse();
  if (chat.kind === "group") {
    const known = state.members.get(chat.id) ?? new Set<string>();
    for (const m of messages) known.add(m.from);
    state.members.set(chat.id, known);
    renderChips();
  }
  renderMessages();
}

/**
 * Marks what the open chat shows as read, up to its newest message from others; returns how many
 * messages that covered (0 when there was nothing to read).
 */
async function markRead(): Promise<number> {
  const chat = state.open;
  if (!chat) return 0;
  const theirs = state.messages.filter((m) => m.from !== state.userId && m.status === "committed");
  const newest = chat.kind === "dialog"
    ? theirs.findLast((m) => !(m as MessageView).readAt)
    : theirs.findLast((m) => ((m as GroupMessageView).seq ?? 0) > (state.group?.me.readSeq ?? 0));
  if (!newest) return 0;
  type Read = z.infer<typeof ReadCount> & Partial<z.infer<typeof GroupReadCount>>;
  const done = await api<Read>(`${chatBase(chat)}/read`, {
    method: "POST",
    body: JSON.stringify({ upTo: newest.id }),
  });
  if (state.group && done.readSeq !== undefined && state.group.id === chat.id) {
    state.group.me.readSeq = Math.max(state.group.me.readSeq, done.readSeq);
  }
  return chat.kind === "group" ? done.read : Math.max(done.read, 1);
}

function stateLabel(m: Shown): string {
  if (m.status === "pending") return "sending…";
  if (m.status === "failed") return "not sent";
  return "readAt" in m && m.readAt ? "read" : "delivered";
}

/** The text with each `@<id>` / `@all` shown as a mention (ids shortened), the own one marked. */
function messageText(text: string): Node[] {
  const nodes: Node[] = [];
  let at = 0;
  for (const match of text.matchAll(MENTION)) {
    nodes.push(document.createTextNode(text.slice(at, match.index)));
    const who = match[1]!.toLowerCase();
    const span = document.createElement("span");
    span.className = `mention${who === state.userId || who === "all" ? " me" : ""}`;
    span.textContent = who === "all" ? "@all" : `@${who === state.userId ? "you" : short(who)}`;
    span.title = match[0];
    nodes.push(span);
    at = match.index + match[0].length;
  }
  nodes.push(document.createTextNode(text.slice(at)));
  return nodes;
}

function renderMessages() {
  const box = $("messages");
  const chat = state.open;
  const shown = chat
    ? [...state.messages, ...state.refused.get(chatKey(chat)) ?? []].filter((m) =>
      m.status !== "deleted" && !state.retried.has(m.id)
    )
    : [];
  if (!chat) {
    box.innerHTML = '<div class="empty">Your messages appear here.</div>';
    return;
  }
  if (shown.length === 0) {
    box.innerHTML = '<div class="empty">No messages yet. Say hello.</div>';
    return;
  }
  box.replaceChildren(...shown.map(messageBubble));
  box.scrollTop = box.scrollHeight;
}

function messageBubble(m: Shown): HTMLDivElement {
  const div = document.createElement("div");
  const mine = m.from === state.userId;
  const mentions = "mentions" in m ? m.mentions.map((x) => x.toLowerCase()) : [];
  const mentioned = !mine && (mentions.includes(state.userId) || mentions.includes("all"));
  div.className = `msg${mine ? ` mine ${m.status}` : ""}${mentioned ? " mentioned" : ""}`;
  div.dataset.id = m.id;
  if ("groupId" in m && !mine) {
    const from = document.createElement("span");
    from.className = "from";
    from.textContent = short(m.from);
    div.append(from);
  }
  div.append(...messageText(m.text));
  if (!mine) return div;
  if (m.status === "failed") {
    const reason = document.createElement("span");
    reason.className = "reason";
    reason.textContent = m.reason ?? FAILED_REASON;
    div.append(reason);
  }
  const s = document.createElement("span");
  s.className = "state";
  s.textContent = stateLabel(m);
  if (m.status === "failed") s.append(" ", actionButton("Retry", "retry", () => retry(m)));
  if (m.status === "committed") s.append(" ", deleteButton(m));
  div.append(s);
  return div;
}

function actionButton(label: string, cls: string, act: () => Promise<void>): HTMLButtonElement {
  const button = document.createElement("button");
  button.type = "button";
  button.className = `quiet ${cls}`;
  button.textContent = label;
  button.addEventListener("click", () => act().catch((err) => showError(err.message)));
  return button;
}

/** Messages whose Delete was pressed once; kept apart from the buttons, which re-renders replace. */
const armedDeletes = new Set<string>();

/** Delete asks once more ("Delete for everyone?") before it deletes. */
function deleteButton(m: Shown): HTMLButtonElement {
  const ask = "Delete for everyone?";
  const button = actionButton(armedDeletes.has(m.id) ? ask : "Delete", "delete", async () => {
    if (!armedDeletes.has(m.id)) {
      armedDeletes.add(m.id);
      button.textContent = ask;
      return;
    }
    armedDeletes.delete(m.id);
    await api(`/api/messages/${m.id}`, { method: "DELETE" });
    state.messages = state.messages.filter((x) => x.id !== m.id);
    renderMessages();
    await loadChats();
  });
  return button;
}

async function retry(m: Shown) {
  const chat = state.open;
  if (!chat) return;
  if (m.local) {
    const key = chatKey(chat);
    state.refused.set(key, (state.refused.get(key) ?? []).filter((x) => x.id !== m.id));
  } else {
    state.retried.add(m.id);
    localStorage.setItem("retried", JSON.stringify([...state.retried].slice(-200)));
  }
  renderMessages();
  await send(m.text);
}

/** The ids and `all` that a group message's text mentions, each once. */
function mentionsIn(text: string): string[] {
  return [...new Set([...text.matchAll(MENTION)].map((m) => m[1]!.toLowerCase()))];
}

async function send(text: string) {
  const chat = state.open;
  if (!chat) return;
  const body = chat.kind === "group" ? { text, mentions: mentionsIn(text) } : { text };
  let sent: SendAccepted;
  try {
    sent = await api<SendAccepted>(`${chatBase(chat)}/send`, {
      method: "POST",
      body: JSON.stringify(body),
      headers: { "Idempotency-Key": crypto.randomUUID() },
    });
  } catch (err) {
    const key = chatKey(chat);
    const refused = shownMessage(chat, `local-${crypto.randomUUID()}`, text, "failed");
    refused.local = true;
    refused.reason = `Not sent: ${(err as Error).message}`;
    state.refused.set(key, [...state.refused.get(key) ?? [], refused]);
    renderMessages();
    return;
  }
  state.messages.push(shownMessage(chat, sent.messageId, text, sent.status));
  readsDelay = READS_FIRST_MS;
  renderMessages();
  await followStatus(sent.messageId);
  await loadChats();
}

function shownMessage(chat: Chat, id: string, text: string, status: MessageStatus): Shown {
  const base = { id, from: state.userId, text, createdAt: new Date().toISOString() };
  return chat.kind === "dialog"
    ? { ...base, to: chat.id, status, readAt: null }
    : { ...base, groupId: chat.id, status, seq: null, mentions: mentionsIn(text) };
}

/** The sender's own message moves pending → committed | failed; its status is asked for until then. */
async function followStatus(id: string) {
  for (let delay = 150; delay < 60_000; delay = Math.min(delay * 1.5, 2_000)) {
    const m = await api<Shown>(`/api/messages/${id}`);
    const held = state.messages.find((x) => x.id === id);
    if (held) Object.assign(held, { status: m.status, seq: "seq" in m ? m.seq : undefined });
    renderMessages();
    if (m.status !== "pending") return;
    await sleep(delay);
  }
}

const READS_FIRST_MS = 2_500;
let readsDelay = READS_FIRST_MS;

/**
 * A read changes no counter of the sender's, so no event says so: while the open dialog has own
 * messages not yet read, it is asked for again, every 2.5 s at first and less often (up to every
 * 20 s) while nothing changes; opening a chat or sending starts again at 2.5 s.
 */
async function watchReads() {
  for (;;) {
    await sleep(readsDelay);
    const unread = () =>
      state.messages.filter((m) =>
        m.from === state.userId && m.status === "committed" && !(m as MessageView).readAt
      ).length;
    const before = unread();
    if (state.open?.kind !== "dialog" || document.hidden || before === 0) continue;
    await loadMessages().catch(() => {});
    readsDelay = unread() < before ? READS_FIRST_MS : Math.min(readsDelay * 1.5, 20_000);
  }
}

// ---- groups ---------------------------------------------------------------------------------

/** Chips that put `@all` or `@<member>` into the message. */
function renderChips() {
  const chips = $("chips");
  const chat = state.open;
  chips.hidden = chat?.kind !== "group";
  if (!chat || chat.kind !== "group") return;
  const known = [...state.members.get(chat.id) ?? []].filter((id) => id !== state.userId);
  chips.replaceChildren(
    ...["all", ...known].map((who) => {
      const chip = document.createElement("button");
      chip.type = "button";
      chip.dataset.mention = who;
      chip.textContent = who === "all" ? "@all" : `@${short(who)}`;
      chip.title = who === "all" ? "Mention everyone" : `Mention ${who}`;
      chip.addEventListener("click", () => insertMention(who));
      return chip;
    }),
  );
  $("knownmembers").replaceChildren(
    ...known.map((id) => Object.assign(document.createElement("option"), { value: id })),
  );
}

function insertMention(who: string) {
  const input = $<HTMLInputElement>("text");
  const sep = input.value && !input.value.endsWith(" ") ? " " : "";
  input.value = `${input.value}${sep}@${who} `;
  input.focus();
}

async function createGroup() {
  const title = $<HTMLInputElement>("grouptitle").value.trim();
  const ids = idsIn($<HTMLTextAreaElement>("groupmembers").value);
  const bad = ids.filter((id) => !isUuid(id));
  if (!title) return showListError("A group needs a title.");
  if (bad.length) return showListError(`Not a user id (UUID): ${bad.join(", ")}`);
  const members = [...new Set(ids.map((id) => id.toLowerCase()))];
  let group: z.infer<typeof GroupCreated>;
  try {
    group = await api<z.infer<typeof GroupCreated>>("/api/groups", {
      method: "POST",
      body: JSON.stringify({ title, members }),
    });
  } catch (err) {
    return showListError((err as Error).message);
  }
  state.members.set(group.id, new Set(members));
  $<HTMLFormElement>("newgroup").reset();
  $("newgroup").hidden = true;
  showListError("");
  await loadChats();
  await openChat({ kind: "group", id: group.id });
}

// ---- members: add, remove, leave ----------------------------------------------------------

/** The Leave button was pressed once; the second press leaves. */
let leaveArmed = false;
const LEAVE = "Leave group";
const LEAVE_ASK = "Leave for good? Press again";

/** Hides or shows the open group's members panel, with its messages and Leave button reset. */
function resetGroupPanel(open: boolean) {
  $("grouppanel").hidden = !open;
  $("membersbtn").classList.toggle("on", open);
  $("membersbtn").setAttribute("aria-expanded", String(open));
  leaveArmed = false;
  $("leavebtn").textContent = LEAVE;
  showGroupNote("");
}

/** A result in the members panel (and no error). */
function showGroupNote(text: string) {
  $("groupnote").textContent = text;
  $("grouperror").textContent = "";
}

/** An error in the members panel. */
function showGroupError(text: string) {
  $("groupnote").textContent = "";
  $("grouperror").textContent = text;
}

/** The user ids typed in a field: split on spaces, commas, semicolons and lines. */
const idsIn = (value: string) => value.split(/[\s,;]+/).filter(Boolean);

async function addMembers() {
  const chat = state.open;
  if (chat?.kind !== "group") return;
  const ids = idsIn($<HTMLTextAreaElement>("addids").value);
  if (ids.length === 0) return showGroupError("Enter the user ids to add.");
  const bad = ids.filter((id) => !isUuid(id));
  if (bad.length) return showGroupError(`Not a user id (UUID): ${bad.join(", ")}`);
  const userIds = [...new Set(ids.map((id) => id.toLowerCase()))];
  const { added } = await api<z.infer<typeof MembersAdded>>(`/api/groups/${chat.id}/members`, {
    method: "POST",
    body: JSON.stringify({ userIds }),
  });
  const known = state.members.get(chat.id) ?? new Set<string>();
  for (const id of userIds) known.add(id);
  state.members.set(chat.id, known);
  $<HTMLTextAreaElement>("addids").value = "";
  showGroupNote(
    added === 0
      ? "Already members: no one added."
      : `Added ${added === 1 ? "1 member" : `${added} members`}.`,
  );
  renderChips();
  await loadGroup(chat.id);
}

async function removeMember() {
  const chat = state.open;
  if (chat?.kind !== "group") return;
  const id = $<HTMLInputElement>("removeid").value.trim().toLowerCase();
  if (!isUuid(id)) return showGroupError("A member's id is a UUID.");
  if (id === state.userId) return showGroupError("To leave the group, press “Leave group”.");
  await api(`/api/groups/${chat.id}/members/${id}`, { method: "DELETE" });
  state.members.get(chat.id)?.delete(id);
  $<HTMLInputElement>("removeid").value = "";
  showGroupNote(`Removed ${short(id)}.`);
  renderChips();
  await loadGroup(chat.id);
}

/** Leave asks once more before it leaves; then the group leaves the list (and, live, the total). */
async function leaveGroup() {
  const chat = state.open;
  if (chat?.kind !== "group") return;
  if (!leaveArmed) {
    leaveArmed = true;
    $("leavebtn").textContent = LEAVE_ASK;
    return;
  }
  leaveArmed = false;
  $("leavebtn").textContent = LEAVE;
  const title = state.group?.title;
  await api(`/api/groups/${chat.id}/members/${state.userId}`, { method: "DELETE" });
  leftGroup(chat.id, title ? `You left “${title}”.` : "You left the group.");
  await loadChats();
}

/** The user is no longer in the group: it closes, its row goes, and the list says why. */
function leftGroup(groupId: string, why: string) {
  state.members.delete(groupId);
  if (state.open?.kind === "group" && state.open.id === groupId) closeChat();
  document.querySelector(`#dialoglist li[data-group="${groupId}"]`)?.remove();
  showListError(why);
}

// ---- wiring ---------------------------------------------------------------------------------

$("devgo").addEventListener("click", async () => {
  const userId = $<HTMLInputElement>("userid").value.trim();
  if (!isUuid(userId)) return showSignIn("Enter a user id in UUID form.");
  const res = await fetch("/dev/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ userId }),
  });
  const body = await res.json();
  if (!res.ok) return showSignIn((body as Partial<Problem>).detail ?? "Sign-in failed.");
  await signIn(body.token);
});
$("random").addEventListener("click", () => {
  $<HTMLInputElement>("userid").value = crypto.randomUUID();
});
$("tokengo").addEventListener("click", () => signIn($<HTMLTextAreaElement>("token").value.trim()));
$("signout").addEventListener("click", () => signOut());
$("copyid").addEventListener("click", () => copyId());
$("back").addEventListener("click", () => closeChat());
$("mutebtn").addEventListener("click", () => toggleMute());
$("membersbtn").addEventListener("click", () => {
  resetGroupPanel($("grouppanel").hidden === true);
  if (!$("grouppanel").hidden) $("addids").focus();
});
$("addmembers").addEventListener("submit", (e) => {
  e.preventDefault();
  addMembers().catch((err) => showGroupError(err.message));
});
$("removemember").addEventListener("submit", (e) => {
  e.preventDefault();
  removeMember().catch((err) => showGroupError(err.message));
});
$("leavebtn").addEventListener("click", () => {
  leaveGroup().catch((err) => showGroupError(err.message));
});
$("newdialog").addEventListener("submit", (e) => {
  e.preventDefault();
  const peer = $<HTMLInputElement>("peer").value.trim();
  if (!isUuid(peer)) return showListError("A peer's id is a UUID, like the one under “Your id”.");
  if (peer.toLowerCase() === state.userId) return showListError("That is you.");
  $<HTMLInputElement>("peer").value = "";
  showListError("");
  openChat({ kind: "dialog", id: peer }).catch((err) => showError(err.message));
});
$("groupbtn").addEventListener("click", () => {
  $("newgroup").hidden = !$("newgroup").hidden;
  if (!$("newgroup").hidden) $("grouptitle").focus();
});
$("cancelgroup").addEventListener("click", () => {
  $("newgroup").hidden = true;
  showListError("");
});
$("newgroup").addEventListener("submit", (e) => {
  e.preventDefault();
  createGroup().catch((err) => showListError(err.message));
});
$("compose").addEventListener("submit", (e) => {
  e.preventDefault();
  const input = $<HTMLInputElement>("text");
  const text = input.value;
  if (!text.trim()) return;
  input.value = "";
  showError("");
  send(text).catch((err) => showError(err.message));
});

start().catch((err) => showSignIn(String(err)));
watchReads();
