/** Sample saga events for tests. */
import { createEvent, type EventData } from "../shared/events.ts";

/** The data of a "message sent" between random users unless given. */
export function messageSentData(
  overrides: Partial<EventData<"dialogs.message.sent">> = {},
): EventData<"dialogs.message.sent"> {
  return {
    transactionId: crypto.randomUUID(),
    messageId: crypto.randomUUID(),
    senderId: crypto.randomUUID(),
    recipientId: crypto.randomUUID(),
    sentAt: new Date().toISOString(),
    ...overrides,
  };
}

/** A "message sent" event with fresh ids. */
export function messageSentEvent(requestId?: string) {
  return createEvent("dialogs.message.sent", messageSentData(), { requestId });
}
