/**
 * A consumer process that takes events and never finishes them, for tests that `kill -9` it:
 * `deno run -A testing/held_consumer.ts <natsUrl> <stream> <durable> <prefix>` prints
 * `holding <event id>` for each event it receives.
 */
import { jetstream } from "@nats-io/jetstream";
import { EventConsumer } from "../shared/consumer.ts";
import { connectNats } from "../shared/jetstream.ts";
import { createLogger } from "../shared/log.ts";

const [natsUrl, stream, durable, prefix] = Deno.args;
if (!natsUrl || !stream || !durable || !prefix) {
  console.error("usage: held_consumer.ts <natsUrl> <stream> <durable> <prefix>");
  Deno.exit(2);
}
const nc = await connectNats(natsUrl, "held-consumer");
const consumer = new EventConsumer({
  js: jetstream(nc),
  stream,
  durable,
  prefix,
  log: createLogger("held-consumer", "error", () => {}),
  handler: (event) => {
    console.log(`holding ${event.id}`);
    return new Promise<void>(() => {});
  },
});
consumer.start();
