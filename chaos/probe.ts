/**
 * The chaos run's read-your-saga probe: a sender sends to a recipient nobody else writes to; the moment
 * another dialogs instance than the one that took the send says `committed`, the recipient's counters
 * are read from every counters instance, so also from one that did not count the message. Each must
 * include it (contract promise 2 across instances).
 */

/** What the probe saw. */
export interface ProbeResult {
  /** Messages seen committed and checked. */
  committed: number;
  /** Counter reads made right after a commit (one per counters instance that answered). */
  checks: number;
  /** Reads that did not include a committed message. */
  violations: number;
  /** Reads that got no 200 (the instance was down or stalled): no verdict. */
  unanswered: number;
  /** Sends whose outcome the probe did not see within its patience (no verdict). */
  unresolved: number;
  /** The first few violations, for the log. */
  examples: string[];
  /** When each violation was seen (ms since the epoch). */
  violationTimes: number[];
}

/** Options of the probe. */
export interface ProbeOptions {
  dialogsUrls: string[];
  countersUrls: string[];
  /** Sender/recipient pairs used by nobody else, each with a token per user. */
  pairs: { from: string; to: string }[];
  tokens: Map<string, string>;
  /** The probe stops sending when this returns false. */
  active: () => boolean;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function fetchJson(
  url: string,
  init: RequestInit,
): Promise<{ status: number; body: Record<string, unknown> } | null> {
  try {
    const res = await fetch(url, { ...init, signal: AbortSignal.timeout(5_000) });
    const body = await res.json().catch(() => ({}));
    return { status: res.status, body };
  } catch {
    return null;
  }
}

/** Runs one loop per pair until `active()` turns false; returns what it saw. */
export async function runProbe(options: ProbeOptions): Promise<ProbeResult> {
  const result: ProbeResult = {
    committed: 0,
    checks: 0,
    violations: 0,
    unanswered: 0,
    unresolved: 0,
    examples: [],
    violationTimes: [],
  };
  const dialogs = options.dialogsUrls, counters = options.countersUrls;
  await Promise.all(options.pairs.map(async ({ from, to }, p) => {
    const auth = (u: string) => ({ Authorization: `Bearer ${options.tokens.get(u)}` });
    let committedSoFar = 0;
    for (let n = 0; options.active(); n++) {
      // The send, retried with its Idempotency-Key on the next instance until one takes it.
      const key = crypto.randomUUID();
      let via = (p + n) % dialogs.length, messageId: string | undefined;
      for (let attempt = 0; attempt < 60 && !messageId; attempt++) {
        via = (p + n + attempt) % dialogs.length;
        const res = await fetchJson(`${dialogs[via]}/api/dialog/${to}/send`, {
          method: "POST",
          headers: { ...auth(from), "Content-Type": "application/json", "Idempotency-Key": key },
          body: JSON.stringify({ text: `probe ${n}` }),
        });
        if (res?.status === 202) messageId = String(res.body.messageId);
        else await sleep(250);
      }
      if (!messageId) {
        result.unresolved++;
        continue;
      }
      // Poll the other dialogs instance (the same one when there is only one) as tightly as is fair.
      const other = dialogs[(via + 1) % dialogs.length]!;
      const deadline = Date.now() + 60_000;
      let status: string | undefined;
      while (Date.now() < deadline) {
        const res = await fetchJson(`${other}/api/messages/${messageId}`, { headers: auth(from) });
        status = res?.status === 200 ? String(res.body.status) : undefined;
        if (status === "committed" || status === "failed") break;
        await sleep(res ? 15 : 250);
      }
      if (status === "failed") continue;
      if (status !== "committed") {
        result.unresolved++;
        continue;
      }
      committedSoFar++;
      result.committed++;
      const reads = await Promise.all(
        counters.map((base) => fetchJson(`${base}/api/counters`, { headers: auth(to) })),
      );
      for (const [i, res] of reads.entries()) {
        if (res?.status !== 200) {
          result.unanswered++;
          continue;
        }
        result.checks++;
        const served = (res.body.dialogs as Record<string, number> | undefined)?.[from] ?? 0;
        if (served < committedSoFar) {
          result.violations++;
          result.violationTimes.push(Date.now());
          if (result.examples.length < 5) {
            result.examples.push(
              `${new Date().toISOString()} ${counters[i]} served ${served} to ${to} for ${from} ` +
                `right after message ` +
                `${committedSoFar} (${messageId}) read committed on ${other}`,
            );
          }
        }
      }
    }
  }));
  return result;
}
