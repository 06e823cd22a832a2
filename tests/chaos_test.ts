/** The short chaos run inside `deno task test`: real processes, every kind of fault, invariant holds. */
import assert from "node:assert/strict";
import { isOk, parseChaosArgs, renderReport } from "../chaos/main.ts";

Deno.test({
  name:
    "chaos (short): under kill -9, NATS and Redis restarts and killed connections, nothing drifts, is lost or counted twice",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const json = await Deno.makeTempFile({ suffix: ".json" });
    try {
      const out = await new Deno.Command(Deno.execPath(), {
        args: [
          "task",
          "-q",
          "chaos",
          ...["--sends", "280", "--rate", "40", "--users", "20", "--fault-every", "0.8"],
          ...["--fuzz", "1000"],
          ...["--json", json],
        ],
        cwd: new URL("../", import.meta.url).pathname,
        env: { NO_COLOR: "1" },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stdout = new TextDecoder().decode(out.stdout);
      assert.equal(out.code, 0, stdout + new TextDecoder().decode(out.stderr));
      const report = JSON.parse(await Deno.readTextFile(json));
      assert.equal(report.ok, true);
      assert.equal(report.sendsAccepted, 280);
      assert.equal(report.committed + report.failed, 280);
      assert.deepEqual([report.drift, report.lost, report.countedTwice], [0, 0, 0]);
      assert.deepEqual([report.driftTables, report.driftServed, report.timedOut], [0, 0, 0]);
      assert.ok(report.probeChecks > 0, "the read-your-saga probe read counters after commits");
      assert.equal(report.probeViolations, 0);
      assert.equal(report.fuzzRequests, 1000);
      assert.equal(report.fuzzServerErrors, 0);
      const kinds = Object.keys(report.faults);
      assert.ok(kinds.length >= 5, `faults injected: ${kinds.join(", ")}`);
      assert.match(stdout, /chaos: PASS/);
    } finally {
      await Deno.remove(json);
    }
  },
});

Deno.test("parseChaosArgs() reads flags over the defaults and refuses unknown or bad ones", () => {
  const options = parseChaosArgs(["--sends", "10", "--fault-every", "0.5"]);
  assert.equal(options.sends, 10);
  assert.equal(options.faultEvery, 0.5);
  assert.equal(options.users, 200);
  assert.throws(() => parseChaosArgs(["--nope", "1"]), /unknown option --nope/);
  assert.throws(() => parseChaosArgs(["--sends", "-3"]), /positive number/);
  assert.throws(() => parseChaosArgs(["--sends"]), /needs a value/);
  const scaled = parseChaosArgs(["--instances", "3", "--nats-cluster", "3"]);
  assert.deepEqual([scaled.instances, scaled.natsCluster, scaled.sagaTimeoutMs], [3, 3, undefined]);
  assert.equal(parseChaosArgs(["--saga-timeout-ms", "9000"]).sagaTimeoutMs, 9000);
  assert.throws(() => parseChaosArgs(["--instances", "1.5"]), /whole number/);
  assert.throws(() => parseChaosArgs(["--saga-timeout-ms", "5"]), /100 or more/);
});

Deno.test("isOk() fails a run with any read-your-saga violation, served drift or timed-out send", () => {
  const clean = {
    seed: 1,
    seconds: 2,
    instances: 2,
    natsNodes: 3,
    sagaTimeoutMs: 8000,
    sendsAccepted: 3,
    committed: 3,
    failed: 0,
    timedOut: 0,
    reads: 0,
    counterReads: 0,
    gaveUp: 0,
    rejected: 0,
    faults: {},
    timeline: [],
    timedOutAfter: {},
    violationsAfter: {},
    fuzzRequests: 0,
    fuzzServerErrors: 0,
    drift: 0,
    driftTables: 0,
    driftServed: 0,
    lost: 0,
    countedTwice: 0,
    probeChecks: 4,
    probeViolations: 0,
    quiet: true,
    ok: false,
  };
  assert.equal(isOk(clean), true);
  assert.equal(isOk({ ...clean, probeViolations: 1 }), false);
  assert.equal(isOk({ ...clean, driftServed: 1 }), false);
  assert.equal(isOk({ ...clean, timedOut: 1, failed: 1, committed: 2 }), false);
  assert.equal(isOk({ ...clean, quiet: false }), false);
});

Deno.test("renderReport() flags a failing run", () => {
  const text = renderReport({
    seed: 1,
    seconds: 2,
    instances: 2,
    natsNodes: 3,
    sagaTimeoutMs: 8000,
    sendsAccepted: 3,
    committed: 2,
    failed: 0,
    timedOut: 0,
    reads: 0,
    counterReads: 0,
    gaveUp: 0,
    rejected: 0,
    faults: {},
    timeline: [],
    timedOutAfter: {},
    violationsAfter: {},
    fuzzRequests: 0,
    fuzzServerErrors: 0,
    drift: 0,
    driftTables: 0,
    driftServed: 0,
    lost: 1,
    countedTwice: 0,
    probeChecks: 4,
    probeViolations: 0,
    quiet: true,
    ok: false,
  });
  assert.match(text, /\| lost \(accepted, neither committed nor failed\) \|\s+1 \|/);
  assert.match(text, /chaos: FAIL/);
});
