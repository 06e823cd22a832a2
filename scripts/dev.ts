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

// When one service exits on its own (a bad variable, say), stop the other too.
const first = await Promise.race(children.map((c) => c.status));
for (const child of children) {
  try {
    child.kill("SIGTERM");
  } catch { /* already gone */ }
}
const statuses = await Promise.all(children.map((c) => c.status));
Deno.exit(statuses.every((s) => s.success) && first.success ? 0 : 1);
