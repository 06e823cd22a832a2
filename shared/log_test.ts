import assert from "node:assert/strict";
import { createLogger } from "./log.ts";

function captured(level: "debug" | "info" | "warn" | "error" = "info") {
  const lines: string[] = [];
  const log = createLogger("svc", level, (line) => lines.push(line));
  return { log, lines, parsed: () => lines.map((l) => JSON.parse(l)) };
}

Deno.test("createLogger() writes one JSON line with time, level, service, message and fields", () => {
  const { log, parsed } = captured();
  log.info("hello", { requestId: "r-1", n: 2n });
  const [line] = parsed();
  assert.equal(line.level, "info");
  assert.equal(line.service, "svc");
  assert.equal(line.msg, "hello");
  assert.equal(line.requestId, "r-1");
  assert.equal(line.n, "2");
  assert.ok(!Number.isNaN(Date.parse(line.time)));
});

Deno.test("createLogger() drops lines below its level and says so in enabled()", () => {
  const { log, lines } = captured("warn");
  log.debug("d");
  log.info("i");
  log.warn("w");
  log.error("e", { err: Object.assign(new Error("boom"), { code: "E1" }) });
  assert.deepEqual(lines.map((l) => JSON.parse(l).msg), ["w", "e"]);
  assert.deepEqual(JSON.parse(lines[1]!).err, { name: "Error", message: "boom", code: "E1" });
  assert.equal(log.enabled("info"), false);
  assert.equal(log.enabled("warn"), true);
});

Deno.test("Logger.child() adds its fields to every line, a line's own fields winning", () => {
  const { log, parsed } = captured("debug");
  const child = log.child({ requestId: "r-1", subject: "a" });
  const grandchild = child.child({ subject: "b", deliveryCount: 2 });
  child.debug("one");
  grandchild.warn("two", { deliveryCount: 3 });
  log.info("three");
  const [one, two, three] = parsed();
  assert.equal(one.requestId, "r-1");
  assert.equal(one.subject, "a");
  assert.equal(two.requestId, "r-1");
  assert.equal(two.subject, "b");
  assert.equal(two.deliveryCount, 3);
  assert.equal(three.requestId, undefined);
  assert.equal(child.enabled("debug"), true);
});
