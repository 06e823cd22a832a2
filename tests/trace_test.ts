/**
 * One trace per saga: both services run as processes with `OTEL_DENO=true`, exporting to an OTLP
 * receiver started by the test; a send's trace holds the dialogs request, its send transaction,
 * the relay's publish, counters' consumer and counting transaction, the reply's publish and
 * dialogs' "saga committed", in that order.
 */
import assert from "node:assert/strict";
import { bearer, call, integrationTest, TEST_JWT_SECRET, waitFor } from "../testing/env.ts";
import { type ReceivedSpan, startOtlpReceiver, tracingEnv } from "../testing/otlp_receiver.ts";
import { freePort } from "../testing/processes.ts";

const root = new URL("../", import.meta.url).pathname;

function spawnService(service: "dialogs" | "counters", env: Record<string, string>) {
  return new Deno.Command(Deno.execPath(), {
    args: ["task", "-q", service],
    cwd: root,
    env: { NO_COLOR: "1", LOG_LEVEL: "info", ...env },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

const SERVER = 2;
const PRODUCER = 4;
const CONSUMER = 5;

integrationTest(
  "a send is one trace: the dialogs request, counters' transaction and the commit, in order",
  async (env) => {
    const receiver = startOtlpReceiver();
    const ports = { dialogs: freePort(), counters: freePort() };
    const common = {
      NATS_URL: env.natsUrl,
      NATS_SUBJECT_PREFIX: env.prefix,
      JWT_SECRET: TEST_JWT_SECRET,
    };
    const children = {
      dialogs: spawnService("dialogs", {
        ...common,
        ...tracingEnv(receiver, "dialogs"),
        PORT: String(ports.dialogs),
        DATABASE_URL: env.dialogsDatabaseUrl,
      }),
      counters: spawnService("counters", {
        ...common,
        ...tracingEnv(receiver, "counters"),
        PORT: String(ports.counters),
        DATABASE_URL: env.countersDatabaseUrl,
        REDIS_URL: env.redisUrl,
        REDIS_KEY_PREFIX: env.redisPrefix,
      }),
    };
    const dialogs = `http://127.0.0.1:${ports.dialogs}`;
    let logs = "";
    try {
      for (const port of [ports.dialogs, ports.counters]) {
        await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/health/ready`)).ok, {
          timeoutMs: 30_000,
          what: `service on ${port} to be ready`,
        });
      }
      const alice = crypto.randomUUID();
      const bob = crypto.randomUUID();
      const sent = await call(`${dialogs}/api/dialog/${bob}/send`, {
        auth: await bearer(alice),
        body: { text: "traced" },
      });
      assert.equal(sent.status, 202);
      const messageId = sent.body.messageId as string;
      await waitFor(async () => {
        const m = await call(`${dialogs}/api/messages/${messageId}`, { auth: await bearer(alice) });
        return m.body?.status === "committed";
      }, { timeoutMs: 15_000, what: "the message to be committed" });

      // The request's server span is the root of the trace the rest must join.
      const request = await waitFor(
        () =>
          receiver.spans.find((s) =>
            s.service === "dialogs" && s.kind === SERVER &&
            Object.values(s.attributes).some((v) => String(v).endsWith(`/api/dialog/${bob}/send`))
          ),
        { timeoutMs: 10_000, what: "the dialogs request's span" },
      );
      const inTrace = (name: string, service: string, kind?: number) =>
        receiver.spans.find((s) =>
          s.traceId === request.traceId && s.service === service && s.name === name &&
          (kind === undefined || s.kind === kind)
        );
      const wanted: [string, string, number?][] = [
        ["send transaction", "dialogs"],
        ["publish dialogs.message.sent", "dialogs", PRODUCER],
        ["process dialogs.message.sent", "counters", CONSUMER],
        ["counting transaction", "counters"],
        ["publish counters.message.counted", "counters", PRODUCER],
        ["process counters.message.counted", "dialogs", CONSUMER],
        ["saga committed", "dialogs"],
      ];
      const found = await waitFor(() => {
        const spans = wanted.map(([name, service, kind]) => inTrace(name, service, kind));
        return spans.every(Boolean) ? spans as ReceivedSpan[] : undefined;
      }, { timeoutMs: 10_000, what: "every span of the saga in the request's trace" }).catch(
        (err) => {
          const names = receiver.spans.filter((s) => s.traceId === request.traceId)
            .map((s) => `${s.service}:${s.name}`);
          throw new Error(`${err.message}; the trace holds ${names.join(", ")}`);
        },
      );
      // In order: each starts no earlier than the one before it.
      const chain = [request, ...found];
      for (let i = 1; i < chain.length; i++) {
        assert.ok(
          chain[i]!.startNs >= chain[i - 1]!.startNs,
          `${chain[i]!.name} starts before ${chain[i - 1]!.name}`,
        );
      }
      // A read is a trace too: its request, and counters' handling of the read event.
      const read = await call(`${dialogs}/api/dialog/${alice}/read`, {
        auth: await bearer(bob),
        body: {},
      });
      assert.equal(read.status, 200);
      const readRequest = await waitFor(
        () =>
          receiver.spans.find((s) =>
            s.service === "dialogs" && s.kind === SERVER &&
            Object.values(s.attributes).some((v) => String(v).endsWith(`/api/dialog/${alice}/read`))
          ),
        { timeoutMs: 10_000, what: "the read request's span" },
      );
      await waitFor(
        () =>
          receiver.spans.some((s) =>
            s.traceId === readRequest.traceId && s.service === "counters" && s.kind === CONSUMER &&
            s.name === "process dialogs.messages.read"
          ),
        { timeoutMs: 10_000, what: "counters' handling of the read in the read's trace" },
      );
      // Each consumer span is the child of the publish it received, and links it.
      for (const i of [2, 5]) {
        const [producer, consumer] = [found[i - 1]!, found[i]!];
        assert.equal(consumer.parentSpanId, producer.spanId, consumer.name);
        assert.deepEqual(consumer.links, [{ traceId: producer.traceId, spanId: producer.spanId }]);
      }
    } finally {
      for (const child of Object.values(children)) child.kill("SIGTERM");
      for (const child of Object.values(children)) {
        const out = await child.output();
        logs += new TextDecoder().decode(out.stdout);
      }
      await receiver.close();
    }
    // The log lines written while a span was active carry its trace id.
    const lines = logs.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
    const counted = lines.find((l) => l.msg === "message counted");
    assert.match(counted?.trace_id ?? "", /^[0-9a-f]{32}$/, "counters' log line has a trace_id");
  },
);
