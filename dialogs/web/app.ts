/// <reference lib="dom" />
/** The web page's client: sign in, dialogs with live unread badges, a dialog with send and read. */
// Types only, from the schemas that validate and document the APIs: the bundle carries no zod.
import type { CountersView } from "../../counters/app.ts";
import type { Problem } from "../../shared/errors.ts";
import type {
  DialogList,
  MessageList,
  MessageStatus,
  MessageView,
  SendAccepted,
} from "../schemas.ts";

interface PageConfig {
  countersUrl: string;
  devLogin: boolean;
}

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const state = {
  token: localStorage.getItem("token") ?? "",
  userId: "",
  config: { countersUrl: "", devLogin: false } as PageConfig,
  counters: { total: 0, dialogs: {} } as CountersView,
  dialogs: [] as DialogList["dialogs"],
  open: "" as string,
  messages: [] as MessageView[],
  stream: null as EventSource | null,
};

const short = (id: string) => id.slice(0, 8);
const isUuid = (s: string) =>
  /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(s);

/** The subject of a JWT, without verifying it (the services do). */
function subjectOf(token: string): string {
  try {
    const payload = JSON.parse(atob(token.split(".")[1]!.replace(/-/g, "+").replace(/_/g, "/")));
    return String(payload.sub ?? "");
  } catch {
    return "";
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
  if (!res.ok) {
    throw new Error((body as Partial<Problem>).detail ?? `request failed (${res.status})`);
  }
  return body as T;
}

function showError(text: string) {
  $("error").textContent = text;
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
  try {
    await loadDialogs();
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
  state.open = "";
  showSignIn(reason);
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
 * After a change of the counters: refresh the list and, if the open dialog has unread messages,
 * show and read them. Counters count a message just before dialogs marks it committed, so a
 * message may not be listed yet: then ask again a few times, briefly.
 */
let catchingUp = false;
async function catchUp() {
  if (catchingUp) return;
  catchingUp = true;
  try {
    for (let delay = 100; delay <= 3_200; delay *= 2) {
      await loadDialogs();
      const listed = new Set(state.dialogs.map((d) => d.peerId));
      const missing = Object.keys(state.counters.dialogs).some((p) => !listed.has(p));
      let unshown = false;
      if (state.open && (state.counters.dialogs[state.open] ?? 0) > 0) {
        unshown = !(await loadMessages());
      }
      if (!missing && !unshown) return;
      await new Promise((r) => setTimeout(r, delay));
    }
  } finally {
    catchingUp = false;
  }
}

function renderCounters() {
  const total = $("total");
  total.textContent = String(state.counters.total);
  total.classList.toggle("zero", state.counters.total === 0);
  document.title = state.counters.total ? `(${state.counters.total}) Unread` : "Unread";
  for (const li of document.querySelectorAll<HTMLElement>("#dialoglist li")) {
    const n = state.counters.dialogs[li.dataset.peer!] ?? 0;
    const badge = li.querySelector<HTMLElement>(".badge")!;
    badge.textContent = String(n);
    badge.classList.toggle("zero", n === 0);
  }
}

// ---- dialogs --------------------------------------------------------------------------------

async function loadDialogs() {
  const { dialogs } = await api<DialogList>("/api/dialogs?limit=100");
  state.dialogs = dialogs;
  const list = $("dialoglist");
  list.replaceChildren(...dialogs.map((d) => {
    const li = document.createElement("li");
    li.dataset.peer = d.peerId;
    li.classList.toggle("open", d.peerId === state.open);
    const text = document.createElement("div");
    text.className = "text";
    const peer = document.createElement("div");
    peer.className = "peer";
    peer.textContent = short(d.peerId);
    const last = document.createElement("div");
    last.className = "last";
    last.textContent = `${d.lastMessage.from === state.userId ? "you: " : ""}${d.lastMessage.text}`;
    text.append(peer, last);
    const badge = document.createElement("span");
    badge.className = "badge zero";
    badge.textContent = "0";
    li.append(text, badge);
    li.addEventListener("click", () => openDialog(d.peerId));
    return li;
  }));
  $("nodialogs").hidden = dialogs.length > 0;
  renderCounters();
}

async function openDialog(peerId: string) {
  state.open = peerId.toLowerCase();
  state.messages = [];
  $("app").classList.add("in-dialog");
  $("dialogtitle").textContent = `with ${short(state.open)}`;
  $("compose").hidden = false;
  for (const li of document.querySelectorAll<HTMLElement>("#dialoglist li")) {
    li.classList.toggle("open", li.dataset.peer === state.open);
  }
  showError("");
  await loadMessages();
  $("text").focus();
}

/** Loads the open dialog and marks what it shows as read; false when there was nothing to read. */
async function loadMessages(): Promise<boolean> {
  const peer = state.open;
  const { messages } = await api<MessageList>(`/api/dialog/${peer}/list?limit=100`);
  if (peer !== state.open) return true;
  state.messages = messages.reverse();
  renderMessages();
  const newest = [...state.messages].reverse().find((m) => m.from === peer && !m.readAt);
  if (!newest) return false;
  await api(`/api/dialog/${peer}/read`, {
    method: "POST",
    body: JSON.stringify({ upTo: newest.id }),
  });
  return true;
}

const STATES: Record<MessageStatus, string> = {
  pending: "sending…",
  committed: "delivered",
  failed: "failed",
};

function renderMessages() {
  const box = $("messages");
  if (state.messages.length === 0) {
    box.innerHTML = '<div class="empty">No messages yet. Say hello.</div>';
    return;
  }
  box.replaceChildren(...state.messages.map((m) => {
    const div = document.createElement("div");
    const mine = m.from === state.userId;
    div.className = `msg${mine ? " mine" : ""}${mine ? ` ${m.status}` : ""}`;
    div.dataset.id = m.id;
    div.textContent = m.text;
    if (mine) {
      const s = document.createElement("span");
      s.className = "state";
      s.textContent = STATES[m.status];
      div.append(s);
    }
    return div;
  }));
  box.scrollTop = box.scrollHeight;
}

async function send(text: string) {
  const peer = state.open;
  const sent = await api<SendAccepted>(
    `/api/dialog/${peer}/send`,
    {
      method: "POST",
      body: JSON.stringify({ text }),
      headers: { "Idempotency-Key": crypto.randomUUID() },
    },
  );
  state.messages.push({
    id: sent.messageId,
    from: state.userId,
    to: peer,
    text,
    status: sent.status,
    createdAt: new Date().toISOString(),
    readAt: null,
  });
  renderMessages();
  await followStatus(sent.messageId);
  loadDialogs().catch(() => {});
}

/** The sender's own message moves pending → committed | failed; its status is asked for until then. */
async function followStatus(id: string) {
  for (let delay = 150; delay < 60_000; delay = Math.min(delay * 1.5, 2_000)) {
    const m = await api<MessageView>(`/api/messages/${id}`);
    const held = state.messages.find((x) => x.id === id);
    if (held) held.status = m.status;
    renderMessages();
    if (m.status !== "pending") return;
    await new Promise((r) => setTimeout(r, delay));
  }
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
$("back").addEventListener("click", () => {
  state.open = "";
  $("app").classList.remove("in-dialog");
});
$("newdialog").addEventListener("submit", (e) => {
  e.preventDefault();
  const peer = $<HTMLInputElement>("peer").value.trim();
  if (!isUuid(peer)) return showError("A peer's id is a UUID.");
  if (peer.toLowerCase() === state.userId) return showError("That is you.");
  $<HTMLInputElement>("peer").value = "";
  openDialog(peer).catch((err) => showError(err.message));
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
