import assert from "node:assert/strict";
import { longerThan, SendMessage } from "./schemas.ts";

Deno.test("longerThan() counts characters (code points), not UTF-16 units", () => {
  assert.equal(longerThan("abc", 3), false);
  assert.equal(longerThan("abcd", 3), true);
  assert.equal(longerThan("😀😀😀", 3), false);
  assert.equal(longerThan("😀😀😀😀", 3), true);
  assert.equal(longerThan("", 0), false);
});

Deno.test("SendMessage accepts 4096 characters and refuses 4097, emoji counted as one", () => {
  assert.equal(SendMessage.safeParse({ text: "😀".repeat(4096) }).success, true);
  assert.equal(SendMessage.safeParse({ text: "x".repeat(4096) }).success, true);
  const long = SendMessage.safeParse({ text: "😀".repeat(4097) });
  assert.equal(long.success, false);
  assert.match(long.error!.issues[0]!.message, /at most 4096 characters/);
});
