/** The short chaos run inside `deno task test`: real processes, every kind of fault, invariant holds. */
import assert from "node:assert/strict";
import postgres from "postgres";
import { parseChaosArgs } from "../chaos/main.ts";
import { type ChaosReport, isOk, renderReport } from "../chaos/report.ts";

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
          ...["--group-members", "1000", "--group-ops", "150", "--group-rate", "20"],
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
      assert.equal(report.groupMembers >= 1000, true, `a big group: ${report.groupMembers}`);
      assert.ok(report.groupSendsAccepted > 0 && report.groupOps >= 100, renderReport(report));
      assert.equal(report.groupRejected, 0);
      assert.equal(report.committed + report.failed, 280 + report.groupSendsAccepted);
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

Deno.test({
  name:
    "chaos stopped by SIGINT under load exits 130 and leaves no process, folder or database behind",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "task",
        "-q",
        "chaos",
        ...["--sends", "2000", "--rate", "20", "--users", "4", "--instances", "1"],
        ...["--fault-every", "1", "--fuzz", "1"],
      ],
      cwd: new URL("../", import.meta.url).pathname,
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    let stdout = "";
    const drained = Promise.all([
      child.stdout.pipeThrough(new TextDecoderStream()).pipeTo(
        new WritableStream({ write: (chunk) => void (stdout += chunk) }),
      ),
      child.stderr.pipeTo(new WritableStream()),
    ]);
    let status: Deno.CommandStatus | undefined;
    let started: Proc[];
    try {
      // The services are up once the run names their ports; then let a fault or two happen.
      const deadline = Date.now() + 90_000;
      while (!/chaos: dialogs-1 :\d+/.test(stdout)) {
        assert.ok(Date.now() < deadline, `the services never came up:\n${stdout}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      // The runner, nats-server, redis-server, dialogs-1 and counters-1 below `deno task`.
      started = descendants(child.pid);
      assert.ok(started.length >= 5, `the run's processes: ${JSON.stringify(started)}`);
      await new Promise((r) => setTimeout(r, 1_500));
      started.push(...descendants(child.pid).filter((p) => !started.some((q) => q.pid === p.pid)));
      child.kill("SIGINT");
      status = await child.status;
    } finally {
      // A failed assertion above leaves the run running: stop it the way the test means to.
      if (!status) {
        child.kill("SIGINT");
        await child.status;
      }
      await drained;
    }
    assert.equal(status.code, 130, stdout);
    const dir = /logs in (\S+)/.exec(stdout)![1]!;
    const id = /chaos-([0-9a-f]+)-/.exec(dir)![1]!;
    const left = [
      ...started.filter(alive),
      ...processesOfRun(dir, `chaos${id}`), // started by a fault after the list above was taken
    ];
    assert.deepEqual(left, [], `still running after the run:\n${stdout}`);
    await assert.rejects(Deno.stat(dir), Deno.errors.NotFound);
    const admin = postgres(
      Deno.env.get("TEST_DATABASE_URL") ?? "postgres://postgres@127.0.0.1:5432/postgres",
      { max: 1, onnotice: () => {} },
    );
    try {
      const dbs =
        await admin`select datname from pg_database where datname like ${`chaos_${id}_%`}`;
      assert.deepEqual(dbs.map((d) => d.datname), []);
    } finally {
      await admin.end();
    }
  },
});

/** A live process: its pid and when it started, so that a reused pid is not taken for it. */
interface Proc {
  pid: number;
  startTime: string;
}

function stat(pid: number): { ppid: number; state: string; startTime: string } | undefined {
  try {
    const text = Deno.readTextFileSync(`/proc/${pid}/stat`);
    // The fields after the command name, which is in parentheses and may hold spaces.
    const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
    return { state: fields[0]!, ppid: Number(fields[1]), startTime: fields[19]! };
  } catch {
    return undefined;
  }
}

function pids(): number[] {
  return [...Deno.readDirSync("/proc")].map((e) => Number(e.name)).filter(Number.isInteger);
}

/** Every process below `root`, found by walking the parent pids in /proc. */
function descendants(root: number): Proc[] {
  const found = new Map<number, Proc>();
  const parents = new Set([root]);
  for (let grew = true; grew;) {
    grew = false;
    for (const pid of pids()) {
      const s = stat(pid);
      if (s && parents.has(s.ppid) && !found.has(pid)) {
        found.set(pid, { pid, startTime: s.startTime });
        parents.add(pid);
        grew = true;
      }
    }
  }
  return [...found.values()];
}

function alive(p: Proc): boolean {
  const s = stat(p.pid);
  return s !== undefined && s.state !== "Z" && s.startTime === p.startTime;
}

/**
 * Live processes of the run in `dir`: nats-server names the folder on its command line, redis-server
 * works in it (it rewrites its command line), the services have the run's subject prefix in their
 * environment.
 */
function processesOfRun(dir: string, prefix: string): Proc[] {
  const read = (path: string, link = false) => {
    try {
      return link ? Deno.readLinkSync(path) : Deno.readTextFileSync(path);
    } catch {
      return "";
    }
  };
  return pids().flatMap((pid) => {
    const s = stat(pid);
    const ours = read(`/proc/${pid}/cmdline`).includes(dir) ||
      read(`/proc/${pid}/cwd`, true).startsWith(dir) ||
      read(`/proc/${pid}/environ`).includes(`NATS_SUBJECT_PREFIX=${prefix}\0`);
    return s && s.state !== "Z" && ours ? [{ pid, startTime: s.startTime }] : [];
  });
}

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
  assert.equal(parseChaosArgs(["--group-members", "10000"]).groupMembers, 10_000);
  assert.throws(() => parseChaosArgs(["--group-ops", "2.5"]), /whole number/);
  assert.throws(() => parseChaosArgs(["--saga-timeout-ms", "5"]), /100 or more/);
});

/** A report of a run where everything went right. */
function cleanReport(): ChaosReport {
  return {
    seed: 1,
    seconds: 2,
    instances: 2,
    natsNodes: 3,
    sagaTimeoutMs: 8000,
    sendsAccepted: 3,
    groupMembers: 1000,
    groupSendsAccepted: 2,
    groupOps: 5,
    groupRejected: 0,
    committed: 5,
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
    fuzzRetryLater: 0,
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
}

Deno.test("isOk() fails a run with any read-your-saga violation, served drift or send timed out by an instance crash", () => {
  const clean = cleanReport();
  assert.equal(isOk(clean), true);
  assert.equal(isOk({ ...clean, probeViolations: 1 }), false);
  assert.equal(isOk({ ...clean, driftServed: 1 }), false);
  const oneTimedOut = { ...clean, timedOut: 1, failed: 1, committed: 2 };
  assert.equal(
    isOk({ ...oneTimedOut, timedOutAfter: { "kill -9 counters-1": 1 } }),
    false,
    "a send failed by an instance crash fails the run",
  );
  assert.equal(
    isOk({ ...oneTimedOut, timedOutAfter: { "kill -9 the NATS node leading the stream": 1 } }),
    true,
    "one failed by a JetStream election after a NATS node kill is reported apart",
  );
  assert.equal(isOk({ ...clean, quiet: false }), false);
  assert.equal(isOk({ ...clean, groupRejected: 1 }), false, "a group operation refused");
});

Deno.test("renderReport() flags a failing run", () => {
  const text = renderReport({ ...cleanReport(), committed: 2, lost: 1 });

  assert.match(text, /\| lost \(accepted, neither committed nor failed\)\s+\|\s+1 \|/);
  assert.match(text, /chaos: FAIL/);
});
