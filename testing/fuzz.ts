/** A seeded generator of random and malformed HTTP requests against both services' routes. */
import { sign } from "hono/jwt";
import { signToken } from "../shared/auth.ts";
import { seededRandom } from "./random.ts";

/**
 * What a request must get: `accepted` — a valid send, 202; `rejected` — some part is definitely
 * invalid (token, id, query, body, media type, key, method, route), a 4xx; `any` — anything
 * below 500.
 */
export type FuzzExpectation = "accepted" | "rejected" | "any";

/** One request to make: `path` includes the query; GET and HEAD never carry a body. */
export interface FuzzRequest {
  index: number;
  /** The user whose token the request carries when it carries a valid one. */
  user: string;
  service: "dialogs" | "counters";
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string | Uint8Array;
  expect: FuzzExpectation;
  /** An exact repeat (same token, Idempotency-Key and body) of an earlier send: same outcome. */
  retryOf?: number;
  /** An earlier send's Idempotency-Key with another text: must not get that send's message. */
  conflictsWith?: number;
}

/** A group requests may name, with the members it had when the requests were made. */
export interface FuzzGroup {
  id: string;
  members: string[];
}

/**
 * What requests draw real values from: users with valid tokens, bad tokens, stored message ids and
 * groups (none: group routes name unknown groups).
 */
export interface FuzzContext {
  users: string[];
  tokens: Record<string, string>;
  badTokens: string[];
  messageIds: string[];
  groups: FuzzGroup[];
}

/** Signs a token per user and bad ones: expired, wrong secret, sub not a UUID, HS512, alg none. */
export async function fuzzContext(
  secret: string,
  users: string[],
  messageIds: string[],
  groups: FuzzGroup[] = [],
) {
  const tokens = Object.fromEntries(
    await Promise.all(users.map(async (u) => [u, await signToken(u, secret)])),
  );
  const exp = Math.floor(Date.now() / 1000) + 3600;
  const b64 = (v: unknown) => btoa(JSON.stringify(v)).replace(/=+$/, "");
  const badTokens = [
    await signToken(users[0]!, secret, -60),
    await signToken(users[0]!, "not-the-secret"),
    await sign({ sub: "alice", exp }, secret, "HS256"),
    await sign({ sub: users[0], exp }, secret, "HS512"),
    `${b64({ alg: "none", typ: "JWT" })}.${b64({ sub: users[0], exp })}.`,
  ];
  return { users, tokens, badTokens, messageIds, groups } satisfies FuzzContext;
}

/** true: valid; false: definitely invalid; null: the service may go either way. */
type Ok = boolean | null;
type Choice<T> = [T, Ok];
const all = (...oks: Ok[]): Ok => oks.includes(false) ? false : oks.includes(null) ? null : true;

type Kind =
  | "send"
  | "read"
  | "list"
  | "limit"
  | "stream"
  | "plain"
  | "groupSend"
  | "groupCreate"
  | "groupAdd"
  | "mute";
type Route = [FuzzRequest["service"], string, string, Kind]; // service, method, path, kind
const PUBLIC = ["/health/live", "/health/ready", "/metrics", "/openapi.json", "/docs"];
// deno-fmt-ignore
const ROUTES: Route[] = [
  ...Array<Route>(6).fill(["dialogs", "POST", "/api/dialog/{peer}/send", "send"]),
  ...Array<Route>(2).fill(["dialogs", "POST", "/api/dialog/{peer}/read", "read"]),
  ...Array<Route>(2).fill(["dialogs", "GET", "/api/dialog/{peer}/list", "list"]),
  ["dialogs", "GET", "/api/dialogs", "limit"],
  ["dialogs", "GET", "/api/messages/{message}", "plain"],
  ...Array<Route>(3).fill(["counters", "GET", "/api/counters", "plain"]),
  ...Array<Route>(3).fill(["counters", "GET", "/api/counters/{peer}", "plain"]),
  ["counters", "GET", "/api/counters/stream", "stream"],
  ["dialogs", "POST", "/api/groups", "groupCreate"],
  ["dialogs", "GET", "/api/groups/{group}", "plain"],
  ["dialogs", "GET", "/api/groups/{group}/list", "list"],
  ...Array<Route>(4).fill(["dialogs", "POST", "/api/groups/{group}/send", "groupSend"]),
  ["dialogs", "POST", "/api/groups/{group}/read", "read"],
  ["dialogs", "POST", "/api/groups/{group}/members", "groupAdd"],
  ["dialogs", "DELETE", "/api/groups/{group}/members/{member}", "plain"],
  ["dialogs", "PUT", "/api/groups/{group}/mute", "mute"],
  ["dialogs", "PUT", "/api/dialog/{peer}/mute", "mute"],
  ["dialogs", "DELETE", "/api/messages/{message}", "plain"],
  ["counters", "GET", "/api/counters/groups/{group}", "plain"],
  ...PUBLIC.flatMap((p): Route[] =>
    [["dialogs", "GET", p, "plain"], ["counters", "GET", p, "plain"]]),
];
// deno-fmt-ignore
// "/" is the web page on dialogs (and unknown on counters), so it is not among them.
const UNKNOWN = ["/api", "/api/dialog/{peer}", "/api/dialog/{peer}/send/x", "/api/nope",
  "/.env", "/favicon.ico", "/health", "/API/DIALOGS", "/api/counters/{peer}/x", "/%00",
  "/api/groups/{group}/send/x", "/api/groups/{group}/members/{member}/x", "/api/group/{group}"];
const METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"];
const MAX_BODY = 64 * 1024;
const PRINTABLE = Array.from({ length: 94 }, (_, i) => String.fromCharCode(33 + i)).join("");
// deno-fmt-ignore
const TEXTS: Choice<string>[] = [["hello", true], ["😀 emoji 👩‍👩‍👧 family", true],
  ["مرحبا \u202eevil\u202c RTL", true], ["a".repeat(4096), true], ["😀".repeat(4096), true],
  ["lone \ud800 surrogate \udfff", null], ["a".repeat(4097), false], ["😀".repeat(4097), false],
  ["", false], [" \n\t ", false], ["nul\u0000inside", false]];
// deno-fmt-ignore
const WRONG_JSON = ['{"text":123}', '{"text":null}', '{"text":["a"]}', '{"text":{}}', "{}", "[]",
  "null", '"hi"', '{"txt":"hi"}', "", '{"text":"a",}', '{"upTo":"x"}', '{"upTo":5}'];
const utf8 = (s: string) => new TextEncoder().encode(s);
const nest = (depth: number) => "[".repeat(depth) + "]".repeat(depth);

/** `count` requests determined by `seed`, about half for each service, most parts usually valid. */
export function fuzzRequests(seed: number, count: number, ctx: FuzzContext): FuzzRequest[] {
  const rnd = seededRandom(seed);
  const int = (lo: number, hi: number) => lo + Math.floor(rnd() * (hi - lo + 1));
  const pick = <T>(items: ArrayLike<T>) => items[Math.floor(rnd() * items.length)]!;
  const chars = (n: number, abc: string) => Array.from({ length: n }, () => pick(abc)).join("");
  const hex = "0123456789abcdef";
  const h = (n: number) => chars(n, hex);
  const uuid = () => `${h(8)}-${h(4)}-4${h(3)}-${pick("89ab")}${h(3)}-${h(12)}`;
  const junk = () => chars(int(1, 40), PRINTABLE + " \té");
  /** The valid choice with probability 0.7, else one of the malformed ones. */
  const usually = <T>(valid: () => Choice<T>, ...bad: (() => Choice<T>)[]) =>
    rnd() < 0.7 ? valid() : pick(bad)();

  // deno-fmt-ignore
  const idSegment = (id: string, user: string): Choice<string> => usually(() => [id, true],
    () => [id.toUpperCase(), true], () => [user, true], () => [uuid(), true],
    () => ["00000000-0000-0000-0000-000000000000", null], () => [id.slice(0, -1), false],
    () => [`${id}0`, false], () => [`{${id}}`, false], () => ["not-a-uuid", false],
    () => [encodeURIComponent("ünïcødé-😀-مرحبا"), false], () => ["x".repeat(4000), false],
    () => [pick(["..", "%2e%2e", "."]), null], () => ["%zz%00%ff", false], () => ["", false],
    () => [`%20${id}`, false], () => [`${id}%00`, false],
    () => [[...id].map((c) => `%${c.charCodeAt(0).toString(16)}`).join(""), null]);
  // deno-fmt-ignore
  const limit = () => usually<string>(() => [pick(["", "limit=1", "limit=50", "limit=200"]), true],
    () => [`limit=${pick(["-1", "0", "1e9", "abc", "201", "1.5", "", "%00", "%F0%9F%98%80"])}`,
      false],
    () => ["limit=1&limit=2", false], () => [`limit=${encodeURIComponent("١٠")}`, false],
    () => ["limit=0x10", null]);
  // deno-fmt-ignore
  const before = () => usually<string>(() => ["", true],
    () => [`before=${pick(ctx.messageIds)}`, null],
    () => [`before=${uuid()}`, null], () => [`before=${pick(["garbage", "", "%E2%80%AE"])}`, false],
    () => [`before=${pick(ctx.messageIds)}&before=${pick(ctx.messageIds)}`, false]);
  // deno-fmt-ignore
  const auth = (token: string) => usually<string | undefined>(() => [`Bearer ${token}`, true],
    () => [`bearer ${token}`, true], () => [`Bearer   ${token}  `, true], () => [undefined, false],
    () => [`Bearer ${pick(ctx.badTokens)}`, false],
    () => [pick(["Bearer", "Basic dXNlcjpwYXNz"]), false], () => [junk(), false],
    () => [`Bearer ${"a".repeat(30_000)}`, false], () => [`Bearer ${token}.x`, false],
    () => [`Bearer ${token} ${token}`, false], () => ["Bearer é", false]);
  // deno-fmt-ignore
  const contentType = () => usually<string | undefined>(() => ["application/json", true],
    () => [pick(["application/json; charset=utf-8", "Application/JSON"]), true],
    () => [pick(["application/json; charset=utf-16", "application/problem+json"]), null],
    () => [pick([undefined, "", "text/plain", "multipart/form-data; boundary=xyz",
      "application/x-www-form-urlencoded", "application/jsonx"]), false]);
  // deno-fmt-ignore
  const idempotencyKey = () => usually<string | undefined>(
    () => [pick([undefined, chars(int(1, 40), `${hex}XYZ-_.:`)]), true],
    () => [chars(255, PRINTABLE), true], () => [chars(pick([256, 300]), PRINTABLE), false],
    () => [pick(["has space", "tab\tkey"]), false],
    () => ["", null], () => ["clé", null]);
  const sendBody = (): Choice<string | Uint8Array | undefined> => {
    const [text, ok] = rnd() < 0.7 ? pick(TEXTS.slice(0, 5)) : pick(TEXTS);
    const valid = JSON.stringify({ text });
    const size = MAX_BODY + int(-3, 3); // spaces before the closing brace keep the JSON valid
    const padded = valid.slice(0, -1) + " ".repeat(size - utf8(valid).length) + "}";
    // deno-fmt-ignore
    return usually<string | Uint8Array | undefined>(() => [valid, ok],
      () => [padded, size <= MAX_BODY && ok],
      () => [JSON.stringify({ text: "hi", extra: Array(3000).fill([1, [2, "x"]]) }), true],
      () => [`{"text":"hi","deep":${nest(20_000)}}`, true],
      () => [`{"text":${nest(20_000)}}`, false],
      () => [valid.slice(0, int(0, valid.length - 1)), false], () => [pick(WRONG_JSON), false],
      () => [Uint8Array.from({ length: int(1, 2000) }, () => int(0, 255)), false],
      () => ["x".repeat(MAX_BODY + int(1, 5000)), false], () => [`\ufeff${valid}`, null],
      () => [pick(['{"text":"a","text":""}', '{"__proto__":{"text":"x"}}']), null],
      () => [Uint8Array.from([...utf8('{"text":"bad '), 0xff, 0xc3, ...utf8('"}')]), null]);
  };
  // deno-fmt-ignore
  const readBody = () => pick([undefined, "{}", JSON.stringify({ upTo: pick(ctx.messageIds) }),
    JSON.stringify({ upTo: uuid() }), pick(WRONG_JSON)]);
  const json = (value: unknown, ok: Ok): Choice<string> => [JSON.stringify(value), ok];
  /** A group send: valid texts with mentions of members, `all`, oneself, repeats; or bad ones. */
  const groupSendBody = (group: FuzzGroup | undefined, user: string): Choice<string> => {
    const [text, textOk] = rnd() < 0.8 ? pick(TEXTS.slice(0, 3)) : pick(TEXTS);
    const member = () => group?.members.length ? pick(group.members) : user;
    // deno-fmt-ignore
    const [mentions, ok] = usually<unknown>(
      () => pick<Choice<unknown>>([[undefined, true], [[], true], [[member()], true],
        [["all"], true], [[user], true], [[member(), member(), member().toUpperCase()], true],
        [["all", member()], true], [["all", "all"], true]]),
      () => [[uuid()], false], () => [["everyone"], false], () => [["ALL"], null],
      () => ["all", false], () => [[member(), 7], false], () => [{ all: true }, false],
      () => [[null], false], () => [Array(10_001).fill(member()), false]);
    return json(mentions === undefined ? { text } : { text, mentions }, all(textOk, ok));
  };
  // deno-fmt-ignore
  const groupCreateBody = (): Choice<string> => usually(
    () => json({ title: pick(["team", "😀 ünïcødé", "t".repeat(200)]),
      members: ctx.users.filter(() => rnd() < 0.4) }, true),
    () => json({ title: "dupes", members: [pick(ctx.users), pick(ctx.users), pick(ctx.users)] }, true),
    () => json({ title: "", members: [] }, false), () => json({ title: "t".repeat(201) }, false),
    () => json({ members: [pick(ctx.users)] }, false), () => json({ title: "x", members: "all" }, false),
    () => json({ title: "x", members: ["not-a-uuid"] }, false), () => json({ title: 5 }, false),
    () => json({ title: "big", members: Array.from({ length: 10_001 }, uuid) }, false),
    () => [pick(WRONG_JSON), false]);
  // deno-fmt-ignore
  const groupAddBody = (): Choice<string> => usually(
    () => json({ userIds: ctx.users.filter(() => rnd() < 0.3) }, true),
    () => json({ userIds: [uuid()] }, true), () => json({ userIds: "x" }, false),
    () => json({ userIds: ["nope"] }, false), () => json({}, false), () => [pick(WRONG_JSON), false]);
  // deno-fmt-ignore
  const muteBody = (): Choice<string> => usually(() => json({ muted: rnd() < 0.6 }, true),
    () => json({ muted: "yes" }, false), () => json({ muted: 1 }, false), () => json({}, false),
    () => json(null, false), () => [pick(WRONG_JSON), false]);

  const requests: FuzzRequest[] = [];
  const keyedSends: FuzzRequest[] = []; // sends with an Idempotency-Key that may be accepted
  for (let index = 0; index < count; index++) {
    const earlier = keyedSends.length && rnd() < 0.04 ? pick(keyedSends) : undefined;
    if (earlier && (rnd() < 0.7 || earlier.index > index - 100)) {
      requests.push({ ...earlier, index, retryOf: earlier.index });
      continue;
    }
    if (earlier) { // another text under a key whose first send has long finished
      const headers = { ...earlier.headers, "Content-Type": "application/json" };
      const body = JSON.stringify({ text: `another text ${index}` });
      const conflictsWith = earlier.index;
      requests.push({ ...earlier, index, headers, body, expect: "any", conflictsWith });
      continue;
    }
    const service = rnd() < 0.5 ? "dialogs" : "counters";
    const known = rnd() < 0.85;
    const [, routeMethod, template, kind] = known
      ? pick(ROUTES.filter(([s]) => s === service))
      : [service, pick(METHODS), pick(UNKNOWN), "plain"];
    const method = rnd() < 0.75 ? routeMethod : pick(METHODS);
    // A path may take several methods (GET and DELETE /api/messages/{id}).
    const methods = ROUTES.filter(([s, , t]) => s === service && t === template).map(([, m]) => m);
    const methodOk = method === routeMethod || methods.includes(method) ||
      (method === "HEAD" && methods.includes("GET"));
    const group = ctx.groups.length && rnd() < 0.9 ? pick(ctx.groups) : undefined;
    // Mostly a member of the group the request names.
    const user = group?.members.length && rnd() < 0.8 ? pick(group.members) : pick(ctx.users);
    const peer = pick(ctx.users.filter((u) => u !== user));
    const real = template.includes("{message}")
      ? pick(ctx.messageIds)
      : template.includes("{group}")
      ? group?.id ?? uuid()
      : peer;
    const [id, idOk]: Choice<string> = !template.includes("{") ? ["", true] : idSegment(real, user);
    const self = id.toLowerCase() === user; // a send to oneself is refused
    // A second id (a member to remove) is a real one: the first one's validity decides.
    const member = rnd() < 0.5 ? user : group?.members.length ? pick(group.members) : peer;
    let path = template.replace(/\{\w+\}/, id).replace("{member}", member);
    const headers: Record<string, string> = {};
    const [authorization, authOk] = auth(ctx.tokens[user]!);
    if (authorization !== undefined) headers.Authorization = authorization;
    const query: string[] = [];
    let queryOk: Ok = true, tokenOk: Ok = false;
    const params = kind === "list" ? [limit(), before()] : kind === "limit" ? [limit()] : [];
    for (const [q, ok] of params) {
      if (q) query.push(q);
      queryOk = all(queryOk, ok);
    }
    if (kind === "stream" && rnd() < 0.5) {
      const token = auth(ctx.tokens[user]!)[0]?.trim().split(/\s+/)[1] ?? junk();
      tokenOk = Object.values(ctx.tokens).includes(token);
      query.push(`access_token=${encodeURIComponent(token)}`);
    }
    if (rnd() < 0.15) {
      query.push(pick(["x=%ZZ", "ü=😀", "limit=-1", "a=1&a=2", "=", "&&", "q=%00"]));
    }
    if (query.length) path += `?${query.join("&")}`;
    if (rnd() < 0.3) {
      headers["X-Request-ID"] = pick([`f-${index}`, junk(), "r".repeat(300), "../x"]);
    }
    const [key, keyOk] = kind === "send" || rnd() < 0.1 ? idempotencyKey() : [undefined, true];
    if (key !== undefined) headers["Idempotency-Key"] = key;
    let body: string | Uint8Array | undefined, bodyOk: Ok = null, ctOk: Ok = null;
    if (method !== "GET" && method !== "HEAD") {
      [body, bodyOk] = kind === "groupSend"
        ? groupSendBody(group, user)
        : kind === "groupCreate"
        ? groupCreateBody()
        : kind === "groupAdd"
        ? groupAddBody()
        : kind === "mute"
        ? muteBody()
        : kind === "send" || rnd() < 0.3
        ? sendBody()
        : [readBody(), null];
      const [type, ok] = contentType();
      if (type !== undefined) headers["Content-Type"] = type;
      ctOk = ok;
    }
    const size = typeof body === "string" ? utf8(body).length : body?.length ?? 0;
    let ok: Ok = !known || !methodOk || size > MAX_BODY ? false : all(idOk, queryOk);
    if (template.startsWith("/api")) {
      ok = all(ok, kind === "stream" && !authorization ? tokenOk : authOk);
    }
    if (kind === "send") ok = all(ok, bodyOk, ctOk, keyOk, !self);
    // Group sends, creations, additions and mutes: a bad body is refused; a good one may be too
    // (membership changes while the requests run), so it may go either way.
    if (kind === "groupSend") ok = all(ok, bodyOk, ctOk, keyOk) === false ? false : null;
    if (kind === "groupCreate" || kind === "groupAdd" || kind === "mute") {
      ok = all(ok, bodyOk, ctOk) === false ? false : null;
    }
    // counters answers CORS preflights (OPTIONS on /api/*) with 204 before any authentication.
    const preflight = service === "counters" && method === "OPTIONS" && path.startsWith("/api");
    const expect = preflight
      ? "any"
      : ok === false
      ? "rejected"
      : ok && kind === "send"
      ? "accepted"
      : "any";
    const request: FuzzRequest = { index, user, service, method, path, headers, body, expect };
    if (kind === "send" && expect !== "rejected" && key) keyedSends.push(request);
    requests.push(request);
  }
  return requests;
}
