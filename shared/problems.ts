/**
 * Every problem `type` the services answer with, and the page each one resolves to: a problem's
 * `type` is `/problems/<name>` on the service that answered, and that service serves the page.
 */

/** What a page says about one problem type. */
interface ProblemDoc {
  /** The status the type comes with. */
  status: number;
  /** When it happens. */
  when: string;
  /** What the client does about it. */
  fix: string;
}

/** The problem types, by name. */
export const PROBLEM_TYPES = {
  "validation-error": {
    status: 400,
    when: "A path parameter, query parameter, header or body field is missing, has the wrong " +
      "type or is out of range: an id that is not a UUID, empty text or text over 4096 " +
      "characters, a message to oneself.",
    fix: "The `errors` list names each invalid field (`path`) and what is wrong with it " +
      "(`message`); correct those fields and send the request again.",
  },
  "bad-request": {
    status: 400,
    when: "The request could not be read: most often a body that is not valid JSON.",
    fix: "Send a JSON body with `Content-Type: application/json`.",
  },
  "unauthorized": {
    status: 401,
    when: "The `Authorization: Bearer <JWT>` header is missing, malformed, expired or signed " +
      "with another secret (the live stream also takes the token as `access_token`).",
    fix: "Sign in again for a fresh token and send it as `Authorization: Bearer <token>`.",
  },
  "forbidden": {
    status: 403,
    when: "The caller may not do this, although the thing exists: only a group's owner removes " +
      "other members.",
    fix: "Ask the group's owner; a member can always remove themselves (leave).",
  },
  "not-found": {
    status: 404,
    when: "No route has this path, or nothing the caller may see has this id (another user's " +
      "message looks the same as one that does not exist).",
    fix: "Check the path against `/docs` and the id against what the API returned.",
  },
  "method-not-allowed": {
    status: 405,
    when: "The path exists but not with this method.",
    fix: "Use one of the methods the `Allow` response header lists.",
  },
  "not-committed": {
    status: 409,
    when: "The message cannot be deleted yet, or any more: it is still `pending`, or it `failed`.",
    fix: "Wait until the message is `committed` (GET /api/messages/{id}); a failed message " +
      "was never delivered and needs no delete.",
  },
  "payload-too-large": {
    status: 413,
    when: "The request body is larger than 64 KiB.",
    fix: "Send a smaller body: a message's text is at most 4096 characters.",
  },
  "unsupported-media-type": {
    status: 415,
    when: "The request has a body but its `Content-Type` is not JSON.",
    fix: "Send the body as JSON with `Content-Type: application/json`.",
  },
  "idempotency-key-reused": {
    status: 422,
    when: "This sender already used the `Idempotency-Key` for a message with other content.",
    fix: "Use a new key for a new message; repeat a key only to retry the very same request.",
  },
  "internal-error": {
    status: 500,
    when: "Something failed inside the service. Nothing was half done: a send either exists " +
      "whole or not at all.",
    fix: "Retry the request (with the same `Idempotency-Key` for a send); if it persists, " +
      "report the `X-Request-ID` of the response: the service's log has the details under it.",
  },
  "unavailable": {
    status: 503,
    when: "The service's database was unreachable for a moment.",
    fix: "Retry after the `Retry-After` header's seconds.",
  },
  "not-ready": {
    status: 503,
    when: "`/health/ready`: a dependency (Postgres, Redis, NATS) does not answer; `checks` " +
      "says which.",
    fix: "Nothing for a client; an operator looks at the named dependency.",
  },
  "http-error": {
    status: 400,
    when: "An HTTP-level error without a more specific type.",
    fix: "The `detail` says what was wrong with the request.",
  },
} as const satisfies Record<string, ProblemDoc>;

/** A problem type's name. */
export type ProblemType = keyof typeof PROBLEM_TYPES;

/** The path a problem type resolves to, on the service that answered. */
export const problemTypePath = (type: ProblemType): string => `/problems/${type}`;

/** Whether `name` is a known problem type. */
export function isProblemType(name: string): name is ProblemType {
  return Object.hasOwn(PROBLEM_TYPES, name);
}

const escapeHtml = (s: string) =>
  s.replace(/[&<>"]/g, (ch) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[ch]!);

/** `code` spans for backquoted words, the rest escaped. */
const prose = (s: string) =>
  escapeHtml(s).replace(/`([^`]+)`/g, (_, code: string) => `<code>${code}</code>`);

/** The page a problem type resolves to. */
export function problemPage(service: string, type: ProblemType): string {
  const doc: ProblemDoc = PROBLEM_TYPES[type];
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${type} · ${escapeHtml(service)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem}
code{background:#f2f2f2;padding:0 .2em}</style></head>
<body><h1><code>${type}</code> (${doc.status})</h1>
<h2>When</h2><p>${prose(doc.when)}</p>
<h2>What to do</h2><p>${prose(doc.fix)}</p>
<p>Every error of this API is <code>application/problem+json</code> (RFC 9457):
<code>type</code> (this page), <code>title</code>, <code>status</code>, <code>detail</code>.
<a href="/problems">All problem types</a> · <a href="/docs">API reference</a></p>
</body></html>`;
}

/** The index of every problem type. */
export function problemIndexPage(service: string): string {
  const rows = Object.entries(PROBLEM_TYPES).map(([type, doc]) =>
    `<li><a href="/problems/${type}"><code>${type}</code></a> (${doc.status}): ${
      prose(doc.when)
    }</li>`
  ).join("\n");
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Problem types · ${escapeHtml(service)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem}
code{background:#f2f2f2;padding:0 .2em}</style></head>
<body><h1>Problem types</h1><ul>
${rows}
</ul><p><a href="/docs">API reference</a></p></body></html>`;
}
