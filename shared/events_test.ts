import assert from "node:assert/strict";
import {
  createEvent,
  deadLetterSubject,
  InvalidEventError,
  parseEvent,
  subjectFor,
  subjectsFrom,
} from "./events.ts";

const encode = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));

const sent = {
  transactionId: crypto.randomUUID(),
  messageId: crypto.randomUUID(),
  senderId: crypto.randomUUID(),
  recipientId: crypto.randomUUID(),
  sentAt: new Date().toISOString(),
};

Deno.test("parseEvent() round-trips an event made by createEvent()", () => {
  const event = createEvent("dialogs.message.sent", sent, { requestId: "req-1" });
  assert.deepEqual(parseEvent(encode(event)), event);
});

Deno.test("parseEvent() rejects bytes that are not JSON", () => {
  assert.throws(() => parseEvent(new TextEncoder().encode("{nope")), InvalidEventError);
});

Deno.test("parseEvent() rejects an unknown type and names the field", () => {
  const event = { ...createEvent("dialogs.message.sent", sent), type: "dialogs.nonsense" };
  assert.throws(() => parseEvent(encode(event)), /type/);
});

Deno.test("parseEvent() rejects data that does not match the type's schema", () => {
  const event = createEvent("dialogs.message.sent", { ...sent, messageId: "not-a-uuid" });
  assert.throws(() => parseEvent(encode(event)), /dialogs\.message\.sent: messageId/);
  const reply = createEvent("counters.message.counted", {
    transactionId: sent.transactionId,
    messageId: sent.messageId,
    outcome: "maybe" as "counted",
  });
  assert.throws(() => parseEvent(encode(reply)), /outcome/);
});

Deno.test("subjects: events and dead letters live on non-overlapping subjects", () => {
  assert.equal(subjectFor("saga", "dialogs.message.sent"), "saga.dialogs.message.sent");
  assert.equal(subjectsFrom("saga", "counters"), "saga.counters.>");
  assert.equal(
    deadLetterSubject("saga", "saga.dialogs.message.sent"),
    "saga_dlq.dialogs.message.sent",
  );
  assert.equal(deadLetterSubject("a.b", "a.b.dialogs.x"), "a.b_dlq.dialogs.x");
});

Deno.test("createEvent() carries a given traceparent, and none with tracing off and none given", () => {
  const traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
  const traced = createEvent("dialogs.message.sent", sent, { traceparent });
  assert.equal(traced.traceparent, traceparent);
  assert.deepEqual(parseEvent(encode(traced)), traced);
  // This test process runs without OTEL_DENO=true.
  assert.equal("traceparent" in createEvent("dialogs.message.sent", sent), false);
});

Deno.test("parseEvent() drops a malformed traceparent and keeps the event", () => {
  const event = createEvent("dialogs.message.sent", sent);
  const parsed = parseEvent(encode({ ...event, traceparent: "not-a-traceparent" }));
  assert.equal(parsed.traceparent, undefined);
  assert.deepEqual(parsed.data, sent);
});
