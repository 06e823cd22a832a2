import assert from "node:assert/strict";
import { createVerifiedTokens, signToken } from "../shared/auth.ts";
import { createBaseApp } from "../shared/http/base_app.ts";
import { createLogger } from "../shared/log.ts";
import { createMetrics } from "../shared/metrics.ts";
import { mountCountersRoutes } from "./app.ts";
import type { CoherentCounters } from "./coherence.ts";

const SECRET = "app-test-secret-0123456789abcdef";

Deno.test("mountCountersRoutes(): a stream that ends removes its listener from the shared shutdown signal", async () => {
  const shutdown = new AbortController();
  const listening = new Set<unknown>();
  const signal = shutdown.signal;
  const add = signal.addEventListener.bind(signal);
  const remove = signal.removeEventListener.bind(signal);
  Object.assign(signal, {
    addEventListener(type: string, listener: EventListener, options?: AddEventListenerOptions) {
      listening.add(listener);
      add(type, listener, options);
    },
    removeEventListener(type: string, listener: EventListener) {
      listening.delete(listener);
      remove(type, listener);
    },
  });
  const reader = {
    read: () => Promise.resolve({ user: { version: 1, dialogs: {} }, group: () => undefined }),
    readGroups: () => Promise.resolve([]),
    subscribe: () => () => {},
  } as unknown as CoherentCounters;
  const log = createLogger("test", "warn", () => {});
  const app = createBaseApp({ service: "counters", log, metrics: createMetrics() });
  const routes = mountCountersRoutes(app, {
    tokens: createVerifiedTokens(SECRET),
    reader,
    heartbeatMs: 60_000,
    corsOrigins: [],
    shutdown: signal,
  });
  const token = await signToken(crypto.randomUUID(), SECRET);
  for (let i = 0; i < 3; i++) {
    const res = await app.request("/api/counters/stream", {
      headers: { Authorization: `Bearer ${token}` },
    });
    const body = res.body!.getReader();
    const first = new TextDecoder().decode((await body.read()).value);
    assert.match(first, /event: counters/);
    assert.equal(listening.size, 1, "the open stream listens for shutdown");
    await body.cancel();
    for (let waited = 0; routes.openStreams() > 0 && waited < 100; waited++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(routes.openStreams(), 0);
    assert.equal(listening.size, 0, "the ended stream's listener is gone");
  }
});
