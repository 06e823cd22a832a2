/**
 * Group counters end to end: dialogs' group routes, counters' saga, caches and live streams, on
 * two counters instances.
 */
import assert from "node:assert/strict";
import { withNoGroups } from "../testing/clients.ts";
import { bearer, call, integrationTest, type Service, waitFor } from "../testing/env.ts";

/** The `counters` events of `user`'s stream on `counters`, as they arrive. */
async function streamEvents(counters: Service, user: string) {
  const res = await fetch(`${counters.url}/api/counters/stream`, {
    headers: { Authorization: await bearer(user) },
  });
  assert.equal(res.status, 200);
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  const events: { id: number; data: Record<string, unknown> }[] = [];
  const reading = (async () => {
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read().catch(() => ({ value: "", done: true }));
      if (done) return;
      buffer += value;
      let end: number;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const id = /^id: (.*)$/m.exec(block)?.[1];
        const data = /^data: (.*)$/m.exec(block)?.[1];
        if (id !== undefined && data !== undefined) {
          events.push({ id: Number(id), data: JSON.parse(data) });
        }
      }
    }
  })();
  return {
    events,
    async close() {
      await reader.cancel().catch(() => {});
      await reading;
    },
  };
}

integrationTest(
  "group counters: once a group message is committed every counters instance counts it for every member, and streams see each message and the leave",
  async (env) => {
    const dialogs = await env.startDialogs();
    const one = await env.startCounters();
    const two = await env.startCounters();
    const [owner, m1, m2] = [1, 2, 3].map(() => crypto.randomUUID());
    const created = await call(`${dialogs.url}/api/groups`, {
      auth: await bearer(owner!),
      body: { title: "team", members: [m1, m2] },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const group = created.body.id as string;
    const stream = await streamEvents(two, m1!);
    try {
      // Counters knows m1 is a member (the group's creation reached it); its stream settles.
      await waitFor(
        async () =>
          (await call(`${two.url}/api/counters/groups/${group}`, { auth: await bearer(m1!) }))
            .status === 200,
        { what: "the membership counted" },
      );
      await new Promise((r) => setTimeout(r, 300));
      const before = stream.events.length;
      assert.ok(before >= 1, "the stream opened with an event");
      for (let i = 1; i <= 3; i++) {
        const sent = await call(`${dialogs.url}/api/groups/${group}/send`, {
          auth: await bearer(owner!),
          body: { text: `message ${i}`, mentions: i === 3 ? ["all"] : [m1] },
        });
        assert.equal(sent.status, 202, JSON.stringify(sent.body));
        // Polled as tightly as possible: at the first sight of "committed", both instances count it.
        for (;;) {
          const r = await call(`${dialogs.url}/api/messages/${sent.body.messageId}`, {
            auth: await bearer(owner!),
          });
          if (r.body.status === "committed") break;
          assert.equal(r.body.status, "pending");
        }
        for (const counters of [one, two]) {
          for (const [member, mentions] of [[m1!, i], [m2!, i === 3 ? 1 : 0]] as const) {
            const res = await call(`${counters.url}/api/counters/groups/${group}`, {
              auth: await bearer(member),
            });
            assert.deepEqual(res.body, { groupId: group, unread: i, mentions, muted: false });
          }
        }
      }
      await waitFor(() => stream.events.length === before + 3, { what: "one event per message" });
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(stream.events.length, before + 3, "no more than one event per message");
      const ids = stream.events.map((e) => e.id);
      assert.ok(ids.every((id, i) => i === 0 || id > ids[i - 1]!), `ids go up: ${ids}`);
      assert.deepEqual(
        stream.events.slice(before).map((e) => e.data.groups),
        [1, 2, 3].map((i) => ({ [group]: { unread: i, mentions: i } })),
      );

      const left = await call(`${dialogs.url}/api/groups/${group}/members/${m1}`, {
        method: "DELETE",
        auth: await bearer(m1!),
      });
      assert.equal(left.status, 204);
      await waitFor(() => stream.events.length === before + 4, { what: "the leave's event" });
      assert.ok(stream.events.at(-1)!.id > ids.at(-1)!, "the id still goes up");
      assert.deepEqual(stream.events.at(-1)!.data, withNoGroups({ total: 0, dialogs: {} }));
      const gone = await call(`${one.url}/api/counters/groups/${group}`, {
        auth: await bearer(m1!),
      });
      assert.equal(gone.status, 404);
    } finally {
      await stream.close();
    }
  },
);
