/** `deno task dev`: runs dialogs (8081) and counters (8082) against the local services; Ctrl-C stops both. */
const permissions = [
  "--v8-flags=--max-semi-space-size=4,--heap-growing-percent=20",
  "--allow-net",
  "--allow-env",
  "--allow-read",
  "--allow-sys",
];
const root = new URL("../", import.meta.url);

// Local development signs in at http://localhost:8081 without tokens, unless told otherwise.
const env = { DEV_LOGIN: Deno.env.get("DEV_LOGIN") ?? "true" };

const children = ["dialogs", "counters"].map((service) =>
  new Deno.Command(Deno.execPath(), {
    args: ["run", ...permissions, new URL(`${service}/main.ts`, root).pathname],
    cwd: root.pathname,
    env,
    stdin: "null",
  }).spawn()
);

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(signal, () => {
    for (const child of children) {
      try {
        child.kill("SIGTERM");
      } catch { /* already gone */ }
    }
  });
}

const PAGE = "http://localhost:8081";
const READY = ["http://localhost:8081/health/ready", "http://localhost:8082/health/ready"];

/** Whether `url` answers 200 now. */
async function answers(url: string): Promise<boolean> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(1_000) });
    await res.body?.cancel();
    return res.ok;
  } catch {
    return false;
  }
}

/** Prints where to go once both services are ready, or what is not after 30 s. */
async function announceWhenReady(): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if ((await Promise.all(READY.map(answers))).every(Boolean)) {
      console.log(`
  dialogs and counters are ready
  the web page      ${PAGE}/
  API reference     ${PAGE}/docs (dialogs), http://localhost:8082/docs (counters)
  Ctrl-C stops both
`);
      return;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  console.log(`\n  not ready after 30 s: ${READY.join(" and ")} say what is missing\n`);
}

void announceWhenReady();

// When one service exits on its own (a bad variable, say), stop the other too.
const first = await Promise.race(children.map((c) => c.status));
for (const child of children) {
  try {
    child.kill("SIGTERM");
  } catch { /* already gone */ }
}
const statuses = await Promise.all(children.map((c) => c.status));
Deno.exit(statuses.every((s) => s.success) && first.success ? 0 : 1);
