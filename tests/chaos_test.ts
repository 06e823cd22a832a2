/** The short chaos run inside `deno task test`: real processes, every kind of fault, invariant holds. */
import assert from "node:assert/strict";
import { parseChaosArgs, renderReport } from "../chaos/main.ts";

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
});

Deno.test("renderReport() flags a failing run", () => {
  const text = renderReport({
    seed: 1,
    seconds: 2,
    sendsAccepted: 3,
    committed: 2,
    failed: 0,
    reads: 0,
    gaveUp: 0,
    rejected: 0,
    faults: {},
    fuzzRequests: 0,
    fuzzServerErrors: 0,
    drift: 0,
    lost: 1,
    countedTwice: 0,
    quiet: true,
    ok: false,
  });
  assert.match(text, /\| lost \(accepted, neither committed nor failed\) \|\s+1 \|/);
  assert.match(text, /chaos: FAIL/);
});
