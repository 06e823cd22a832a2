/**
 * The chaos run's group load: one big group (`--group-members`, 1,000 by default) and a few small
 * ones; sends naming members, `all`, oneself or no one; marks read; deletes of one's own messages;
 * group and dialog mutes; members leaving and being added again. Spread over the instances, and
 * retried on the next instance (a send with the same Idempotency-Key) when a fault cuts a request.
 * Members who send never leave; the passive members (no load of their own) leave and come back.
 */
import { signToken } from "../shared/auth.ts";
import { seededRandom } from "../testing/random.ts";

/** A group of the load with its current members. */
export interface LoadGroup {
  id: string;
  /** Members when it was created. */
  size: number;
  /** Members who send, read and mute; they never leave. */
  active: string[];
  /** Members who only leave and come back (the big group's bulk). */
  passive: Set<string>;
  /** Passive users who left and may be added again. */
  gone: Set<string>;
}

/** What the group load did. */
export interface GroupLoadResult {
  groups: LoadGroup[];
  /** messageId → sender and group of every group send that got a 202. */
  accepted: Map<string, { from: string; to: string }>;
  /** Answered operations by kind. */
  ops: Record<string, number>;
  /** 4xx answers a well-formed load should not get. */
  rejected: number;
  /** Operations that never got an answer after every retry. */
  gaveUp: number;
  /** The first few rejections, for the log. */
  examples: string[];
}

/** Options of the group load. */
export interface GroupLoadOptions {
  dialogsUrls: string[];
  /** The load's users (they have tokens); the big group's active members. */
  users: string[];
  tokens: Map<string, string>;
  secret: string;
  /** Members of the big group, counting the active ones. */
  groupMembers: number;
  /** Operations to issue. */
  ops: number;
  /** Operations per second. */
  rate: number;
  concurrency: number;
  seed: number;
  /** Stop issuing new operations at this time (ms since epoch). */
  deadline: number;
}

type Op =
  | { kind: "send"; from: string; group: LoadGroup; mentions?: string[]; key: string }
  | { kind: "read"; from: string; group: LoadGroup }
  | { kind: "delete"; from: string; messageId: string }
  | { kind: "muteGroup"; from: string; group: LoadGroup; muted: boolean }
  | { kind: "muteDialog"; from: string; peer: string; muted: boolean }
  | { kind: "leave"; from: string; group: LoadGroup }
  | { kind: "add"; from: string; group: LoadGroup; userIds: string[] };

interface Answer {
  status: number;
  // deno-lint-ignore no-explicit-any
  body: any;
}

/** Creates the groups, then runs the operations until `ops` were issued or the deadline passed. */
export async function runGroupLoad(options: GroupLoadOptions): Promise<GroupLoadResult> {
  const random = seededRandom(options.seed + 14);
  const pick = <T>(items: T[]) => items[Math.floor(random() * items.length)]!;
  const result: GroupLoadResult = {
    groups: [],
    accepted: new Map(),
    ops: {},
    rejected: 0,
    gaveUp: 0,
    examples: [],
  };
  const tokens = options.tokens;
  const tokenOf = async (user: string) => {
    let token = tokens.get(user);
    if (!token) tokens.set(user, token = await signToken(user, options.secret));
    return token;
  };
  let calls = 0;
  /** One request, retried on the next instance while it gets no answer or a 5xx. */
  const call = async (
    user: string,
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<Answer | null> => {
    const i = calls++;
    for (let attempt = 0; attempt < 40; attempt++) {
      const base = options.dialogsUrls[(i + attempt) % options.dialogsUrls.length];
      try {
        const res = await fetch(`${base}${path}`, {
          method,
          headers: {
            Authorization: `Bearer ${await tokenOf(user)}`,
            ...(body === undefined ? {} : { "Content-Type": "application/json" }),
            ...headers,
          },
          body: body === undefined ? undefined : JSON.stringify(body),
          signal: AbortSignal.timeout(10_000),
        });
        const text = await res.text();
        if (res.status < 500) {
          let parsed: unknown = text;
          try {
            parsed = JSON.parse(text);
          } catch { /* not JSON */ }
          return { status: res.status, body: parsed };
        }
      } catch { /* no answer: the next instance */ }
      await new Promise((r) => setTimeout(r, Math.min(100 * 2 ** attempt, 2_000)));
    }
    result.gaveUp++;
    return null;
  };
  const reject = (what: string, answer: Answer) => {
    result.rejected++;
    if (result.examples.length < 5) {
      result.examples.push(`${what} answered ${answer.status}: ${JSON.stringify(answer.body)}`);
    }
  };

  // The big group: the load's users and passive members up to --group-members; and three small.
  const owner = options.users[0]!;
  const specs = [
    {
      active: options.users,
      passive: Array.from(
        { length: Math.max(0, options.groupMembers - options.users.length) },
        () => crypto.randomUUID(),
      ),
    },
    ...[0, 1, 2].map(() => ({
      active: options.users.filter(() => random() < 0.4).concat(owner),
      passive: Array.from({ length: 3 }, () => crypto.randomUUID()),
    })),
  ];
  for (const spec of specs) {
    const active = [...new Set(spec.active)];
    const created = await call(owner, "POST", "/api/groups", {
      title: `chaos ${active.length + spec.passive.length}`,
      members: [...active, ...spec.passive],
    });
    if (!created) continue;
    if (created.status !== 201) {
      reject("POST /api/groups", created);
      continue;
    }
    result.groups.push({
      id: created.body.id,
      size: active.length + spec.passive.length,
      active,
      passive: new Set(spec.passive),
      gone: new Set(),
    });
  }
  if (result.groups.length === 0) return result;

  const own = new Map<string, string[]>(); // sender → its accepted group messages
  const nextOp = (): Op => {
    const group = pick(result.groups);
    const from = pick(group.active);
    const r = random();
    if (r < 0.45) {
      const m = random();
      const other = () => pick(group.active);
      const mentions = m < 0.3
        ? undefined
        : m < 0.5
        ? [other()]
        : m < 0.65
        ? ["all"]
        : m < 0.75
        ? [from]
        : m < 0.85
        ? [other(), other(), "all"]
        : [];
      return { kind: "send", from, group, mentions, key: crypto.randomUUID() };
    }
    if (r < 0.65) return { kind: "read", from, group };
    const mine = own.get(from) ?? [];
    if (r < 0.75 && mine.length) {
      return {
        kind: "delete",
        from,
        messageId: mine.splice(Math.floor(random() * mine.length), 1)[0]!,
      };
    }
    if (r < 0.82) return { kind: "muteGroup", from, group, muted: random() < 0.5 };
    if (r < 0.88) {
      return {
        kind: "muteDialog",
        from,
        peer: pick(options.users.filter((u) => u !== from)),
        muted: random() < 0.5,
      };
    }
    if (r < 0.94 && group.passive.size) {
      const leaving = pick([...group.passive]);
      group.passive.delete(leaving);
      group.gone.add(leaving);
      return { kind: "leave", from: leaving, group };
    }
    const back = group.gone.size && random() < 0.7 ? pick([...group.gone]) : crypto.randomUUID();
    group.gone.delete(back);
    group.passive.add(back);
    return { kind: "add", from: owner, group, userIds: [back] };
  };

  const perform = async (op: Op): Promise<void> => {
    let answer: Answer | null;
    let ok: (status: number) => boolean = (s) => s === 200;
    switch (op.kind) {
      case "send":
        answer = await call(
          op.from,
          "POST",
          `/api/groups/${op.group.id}/send`,
          op.mentions
            ? { text: `chaos ${op.key}`, mentions: op.mentions }
            : { text: `chaos ${op.key}` },
          { "Idempotency-Key": op.key },
        );
        ok = (s) => s === 202;
        if (answer?.status === 202) {
          result.accepted.set(answer.body.messageId, { from: op.from, to: op.group.id });
          own.set(op.from, [...(own.get(op.from) ?? []), answer.body.messageId]);
        }
        break;
      case "read":
        answer = await call(op.from, "POST", `/api/groups/${op.group.id}/read`, {});
        break;
      case "delete":
        answer = await call(op.from, "DELETE", `/api/messages/${op.messageId}`);
        ok = (s) => s === 200 || s === 409; // 409: still pending (or failed)
        break;
      case "muteGroup":
        answer = await call(op.from, "PUT", `/api/groups/${op.group.id}/mute`, { muted: op.muted });
        break;
      case "muteDialog":
        answer = await call(op.from, "PUT", `/api/dialog/${op.peer}/mute`, { muted: op.muted });
        break;
      case "leave":
        answer = await call(op.from, "DELETE", `/api/groups/${op.group.id}/members/${op.from}`);
        ok = (s) => s === 204 || s === 404; // 404: a retry after the leave had landed
        break;
      case "add":
        answer = await call(op.from, "POST", `/api/groups/${op.group.id}/members`, {
          userIds: op.userIds,
        });
        break;
    }
    if (!answer) return;
    if (ok(answer.status)) result.ops[op.kind] = (result.ops[op.kind] ?? 0) + 1;
    else reject(op.kind, answer);
  };

  const started = Date.now();
  const interval = 1000 / options.rate;
  let next = 0;
  await Promise.all(Array.from({ length: options.concurrency }, async () => {
    for (;;) {
      const i = next++;
      if (i >= options.ops || Date.now() > options.deadline) return;
      const wait = started + i * interval - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      await perform(nextOp());
    }
  }));
  return result;
}
