import assert from "node:assert/strict";
import { countByLastFault, countTimeoutsByFault } from "./report.ts";

const timeline = [
  { at: 10, kind: "kill -9 the NATS node leading the stream" },
  { at: 13, kind: "kill -9 dialogs-1" },
  { at: 40, kind: "kill -9 dialogs-2" },
];
const at = (s: number) => 1_000_000 + s * 1000;

Deno.test("countByLastFault() names the last fault before each time", () => {
  assert.deepEqual(countByLastFault([at(14), at(41), at(5)], timeline, at(0)), {
    "kill -9 dialogs-1": 1,
    "kill -9 dialogs-2": 1,
    "no fault yet": 1,
  });
});

Deno.test("countTimeoutsByFault() charges a NATS kill with the sagas its elections overlapped", () => {
  // Sent 4 s before the kill (in flight at 8 s), 3 s and 9 s after it: its elections.
  const during = [at(6), at(13), at(19)];
  // Sent 11 s after the kill, or after a later fault with no NATS kill near: the last fault.
  const after = [at(21), at(45)];
  assert.deepEqual(countTimeoutsByFault([...during, ...after], timeline, at(0), 8_000), {
    "kill -9 the NATS node leading the stream": 3,
    "kill -9 dialogs-1": 1,
    "kill -9 dialogs-2": 1,
  });
});
