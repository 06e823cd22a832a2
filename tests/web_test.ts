/// <reference lib="dom" />
/**
 * The web page in headless Chromium: two and three users, live badges, reads, failed sends,
 * groups, mentions, mutes and deletes, members added, leaving and removed, and a phone-sized screen.
 */
import assert from "node:assert/strict";
import { type Browser, chromium, type Page } from "playwright-core";
import type { DialogsConfig } from "../dialogs/config.ts";
import { signToken } from "../shared/auth.ts";
import { integrationTest, type Service, TEST_JWT_SECRET, type TestEnv } from "../testing/env.ts";
import { freePort } from "../testing/processes.ts";

/** Debian's Chromium; playwright-core downloads no browser of its own. */
const CHROMIUM = Deno.env.get("CHROMIUM_PATH") ?? "/usr/bin/chromium";

async function launch(): Promise<Browser> {
  return await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

async function startBoth(env: TestEnv, dialogsOverrides: Partial<DialogsConfig> = {}) {
  const [dialogsPort, countersPort] = [freePort(), freePort()];
  const counters = await env.startCounters({
    overrides: { PORT: countersPort, CORS_ORIGINS: [`http://127.0.0.1:${dialogsPort}`] },
  });
  const dialogs = await env.startDialogs({
    overrides: {
      PORT: dialogsPort,
      DEV_LOGIN: true,
      COUNTERS_PUBLIC_URL: `http://127.0.0.1:${countersPort}`,
      ...dialogsOverrides,
    },
  });
  return { dialogs, counters };
}

async function signIn(browser: Browser, dialogs: Service, userId: string, width = 1000) {
  const context = await browser.newContext({ viewport: { width, height: 700 } });
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: dialogs.url });
  const page = await context.newPage();
  await page.goto(dialogs.url);
  assert.equal(await page.isVisible("#app"), false, "nothing but the sign-in before signing in");
  await page.fill("#userid", userId);
  await page.click("#devgo");
  await page.waitForSelector("#app:not([hidden])");
  assert.equal(await page.isVisible("#signin"), false, "the sign-in form is gone");
  assert.equal(await page.isVisible("#dialogs"), true);
  return page;
}

const total = (page: Page) => page.textContent("#total");
const row = (kind: "peer" | "group", id: string) => `#dialoglist li[data-${kind}="${id}"]`;

/** Waits until the selector's element is visible with exactly this text. */
async function waitText(page: Page, selector: string, text: string) {
  await page.waitForFunction(
    ([sel, want]) => {
      const el = document.querySelector<HTMLElement>(sel!);
      return el !== null && !el.hidden && el.offsetParent !== null && el.textContent === want;
    },
    [selector, text],
  );
}

/** Waits until the selector's element is hidden (or gone). */
async function waitHidden(page: Page, selector: string) {
  await page.waitForFunction((sel) => {
    const el = document.querySelector<HTMLElement>(sel);
    return el === null || el.hidden || el.offsetParent === null;
  }, selector);
}

/** Leaves the open chat (the Back button shows on narrow screens only). */
async function back(page: Page) {
  await page.evaluate(() => document.getElementById("back")?.click());
}

/** Calls a dialogs route as `userId`, as a second device of that user would. */
async function call(
  dialogs: Service,
  userId: string,
  method: string,
  path: string,
  body?: unknown,
) {
  const res = await fetch(`${dialogs.url}${path}`, {
    method,
    headers: {
      Authorization: `Bearer ${await signToken(userId, TEST_JWT_SECRET)}`,
      "Content-Type": "application/json",
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await res.json();
  assert.ok(res.ok, `${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

/** Sends from the open chat and waits until the message is committed. */
async function sendText(page: Page, text: string) {
  const before = await page.locator(".msg.mine.committed").count();
  await page.fill("#text", text);
  await page.click("#compose button");
  await page.waitForFunction(
    (n) => document.querySelectorAll(".msg.mine.committed").length > n,
    before,
  );
}

integrationTest(
  "web page: A sends and B's badge rises live; B reads it and A sees read; a refused send shows its reason, retries, and is not the preview",
  async (env) => {
    const { dialogs } = await startBoth(env);
    const a = crypto.randomUUID(), b = crypto.randomUUID();
    const browser = await launch();
    try {
      const pageA = await signIn(browser, dialogs, a);
      const pageB = await signIn(browser, dialogs, b);
      assert.equal(await total(pageB), "0");

      await pageA.fill("#peer", b);
      await pageA.click("#newdialog button");
      await pageA.fill("#text", "Hello from A");
      await pageA.click("#compose button");
      await pageA.waitForSelector(".msg.mine.committed >> text=delivered");
      await pageA.waitForSelector(row("peer", b));
      assert.equal(
        await pageA.locator("#dialoglist .badge:visible").count(),
        0,
        "no badge on a row with nothing unread",
      );

      // No reload: the badge and the title follow the counters stream.
      await pageB.waitForFunction(() => document.getElementById("total")?.textContent === "1");
      assert.equal(await pageB.title(), "(1) Unread");
      await waitText(pageB, `${row("peer", a)} .badge.count`, "1");

      await pageB.click(row("peer", a));
      await pageB.waitForSelector(".msg >> text=Hello from A");
      await pageB.waitForFunction(() => document.getElementById("total")?.textContent === "0");
      assert.equal(await pageB.title(), "Unread");
      await waitHidden(pageB, `${row("peer", a)} .badge.count`);
      // The sender sees that it was read, without reloading.
      await waitText(pageA, ".msg.mine .state", "read Delete");

      // With the dialog open, a new message is shown and read at once, live.
      await sendText(pageA, "Second");
      await pageB.waitForSelector(".msg >> text=Second");
      await pageB.waitForFunction(() => document.getElementById("total")?.textContent === "0");

      await env.sql(
        "counters",
      )`alter table unread_counters add constraint unread_max check (unread <= 0)`;
      await back(pageB);
      await pageA.fill("#text", "Refused");
      await pageA.click("#compose button");
      await pageA.waitForSelector(".msg.mine.failed >> text=Refused");
      assert.match(await pageA.textContent(".msg.mine.failed .reason") ?? "", /Not delivered/);
      assert.match(await pageA.textContent(".msg.mine.failed .state") ?? "", /not sent/);
      assert.equal(await total(pageB), "0", "a failed message never shows up as unread");
      await waitText(pageA, `${row("peer", b)} .last`, "you: Second");

      // A send the API refuses outright gives the API's reason, and a retry too.
      await pageA.fill("#text", "x".repeat(4096));
      await pageA.evaluate(() => {
        const input = document.getElementById("text") as HTMLInputElement;
        input.removeAttribute("maxlength");
        input.value += "y";
      });
      await pageA.click("#compose button");
      await pageA.waitForSelector(".msg.mine.failed .reason >> text=at most 4096");

      await env.sql("counters")`alter table unread_counters drop constraint unread_max`;
      await pageA.click('.msg.mine.failed:has-text("Refused") .retry');
      await pageA.waitForSelector('.msg.mine.committed:has-text("Refused")');
      assert.equal(await pageA.locator('.msg:has-text("Refused")').count(), 1, "retried, once");
      await pageB.waitForFunction(() => document.getElementById("total")?.textContent === "1");
      await waitText(pageA, `${row("peer", b)} .last`, "you: Refused");
    } finally {
      await browser.close();
    }
  },
);

integrationTest(
  "web page: a muted dialog's badge is grey and out of the total; deleting an unread message lowers it",
  async (env) => {
    const { dialogs } = await startBoth(env);
    const a = crypto.randomUUID(), b = crypto.randomUUID();
    const browser = await launch();
    try {
      const pageA = await signIn(browser, dialogs, a);
      const pageB = await signIn(browser, dialogs, b);
      await pageB.fill("#peer", a);
      await pageB.click("#newdialog button");
      await pageB.click("#mutebtn");
      await waitText(pageB, "#mutebtn", "Unmute");
      await back(pageB);

      await pageA.fill("#peer", b);
      await pageA.click("#newdialog button");
      await sendText(pageA, "one");
      await sendText(pageA, "two");
      await waitText(pageB, `${row("peer", a)} .badge.count`, "2");
      assert.equal(
        await pageB.getAttribute(`${row("peer", a)} .badge.count`, "class"),
        "badge count muted",
      );
      assert.equal(await total(pageB), "0", "a muted dialog is left out of the total");

      const two = pageA.locator('.msg.mine:has-text("two") .delete');
      await two.click();
      assert.equal(await two.textContent(), "Delete for everyone?");
      await two.click();
      await pageA.waitForFunction(() =>
        ![...document.querySelectorAll(".msg")].some((m) => m.textContent?.startsWith("two"))
      );
      await waitText(pageB, `${row("peer", a)} .badge.count`, "1");

      await pageB.click(row("peer", a));
      await pageB.waitForSelector(".msg >> text=one");
      assert.equal(await pageB.locator('.msg:has-text("two")').count(), 0, "gone for the peer");
      await pageB.click("#mutebtn");
      await waitText(pageB, "#mutebtn", "Mute");
      await back(pageB);
      await sendText(pageA, "three");
      await pageB.waitForFunction(() => document.getElementById("total")?.textContent === "1");
      assert.equal(
        await pageB.getAttribute(`${row("peer", a)} .badge.count`, "class"),
        "badge count",
      );
    } finally {
      await browser.close();
    }
  },
);

integrationTest(
  "web page: three users in a group: badges, @ badges for mentions, a muted group, a delete",
  async (env) => {
    const { dialogs } = await startBoth(env);
    const [a, b, c] = [crypto.randomUUID(), crypto.randomUUID(), crypto.randomUUID()];
    const browser = await launch();
    try {
      const pageA = await signIn(browser, dialogs, a);
      const pageB = await signIn(browser, dialogs, b);
      const pageC = await signIn(browser, dialogs, c);

      // A creates the group on the page.
      await pageA.click("#groupbtn");
      await pageA.fill("#grouptitle", "Launch");
      await pageA.fill("#groupmembers", `${b}, ${c.toUpperCase()}`);
      await pageA.click("#creategroup");
      await waitText(pageA, "#dialogtitle", "Launch · 3 members");
      const group = await pageA.evaluate(() =>
        document.querySelector<HTMLElement>("#dialoglist li.open")?.dataset.group
      );
      assert.ok(group, "the new group is listed and open");

      // A mention by chip: B gets an @ badge, C only the unread one.
      await pageA.fill("#text", "Hi");
      await pageA.click(`#chips [data-mention="${b}"]`);
      assert.equal(await pageA.inputValue("#text"), `Hi @${b} `);
      await sendText(pageA, await pageA.inputValue("#text"));
      await waitText(pageB, `${row("group", group)} .badge.count`, "1");
      await waitText(pageB, `${row("group", group)} .badge.at`, "@");
      await waitText(pageB, "#mentions", "@1");
      await waitText(pageC, `${row("group", group)} .badge.count`, "1");
      await waitHidden(pageC, `${row("group", group)} .badge.at`);
      assert.equal(await pageC.textContent(`${row("group", group)} .peer`), "Launchgroup");

      // @all typed by hand mentions everyone but the sender.
      await sendText(pageA, "@all standup at ten");
      await waitText(pageB, `${row("group", group)} .badge.count`, "2");
      await waitText(pageB, `${row("group", group)} .badge.at`, "@2");
      await waitText(pageC, `${row("group", group)} .badge.at`, "@");
      await waitHidden(pageA, `${row("group", group)} .badge.count`);

      // C reads the group, then mutes it: its badge turns grey and leaves the total.
      await pageC.click(row("group", group));
      await pageC.waitForSelector(".msg.mentioned >> text=standup at ten");
      await pageC.waitForFunction(() => document.getElementById("total")?.textContent === "0");
      await pageC.click("#mutebtn");
      await waitText(pageC, "#mutebtn", "Unmute");
      await back(pageC);
      await sendText(pageA, "third");
      await waitText(pageC, `${row("group", group)} .badge.count`, "1");
      assert.match(
        await pageC.getAttribute(`${row("group", group)} .badge.count`, "class") ?? "",
        /muted/,
      );
      assert.equal(await total(pageC), "0", "a muted group is left out of the total");
      await waitText(pageB, `${row("group", group)} .badge.count`, "3");
      assert.equal(await total(pageB), "3");

      // A deletes "third": it leaves every count that included it.
      const third = pageA.locator('.msg.mine:has-text("third") .delete');
      await third.click();
      await pageA.waitForSelector(
        '.msg.mine:has-text("third") .delete >> text=Delete for everyone?',
      );
      await third.click();
      await waitText(pageB, `${row("group", group)} .badge.count`, "2");
      await waitHidden(pageC, `${row("group", group)} .badge.count`);

      // B: a muted dialog with C, and another group that mentions B.
      await pageB.fill("#peer", c);
      await pageB.click("#newdialog button");
      await pageB.click("#mutebtn");
      await waitText(pageB, "#mutebtn", "Unmute");
      await back(pageB);
      await call(dialogs, c, "POST", `/api/dialog/${b}/send`, { text: "lunch?" });
      const design = await call(dialogs, c, "POST", "/api/groups", {
        title: "Design",
        members: [a, b],
      });
      await call(dialogs, c, "POST", `/api/groups/${design.id}/send`, {
        text: `@${b} the mockups are in`,
        mentions: [b],
      });
      await waitText(pageB, `${row("group", design.id)} .badge.at`, "@");
      await waitText(pageB, `${row("peer", c)} .badge.count`, "1");
      await waitText(pageB, "#total", "3");

      // B opens Launch: both messages, the mentions of B marked; the group is read.
      await pageB.click(row("group", group));
      await pageB.waitForSelector(".msg.mentioned >> text=standup at ten");
      assert.equal(await pageB.locator(".msg.mentioned").count(), 2);
      assert.equal(await pageB.locator('.msg:has-text("third")').count(), 0, "deleted for all");
      await waitText(pageB, "#total", "1");
      await waitText(pageB, "#mentions", "@1");
      const screenshot = Deno.env.get("SCREENSHOT");
      if (screenshot) await pageB.screenshot({ path: screenshot });
    } finally {
      await browser.close();
    }
  },
);

integrationTest(
  "web page: the owner adds a member (bad ids refused, nothing changed); a member leaves on a phone and the group leaves its list and total; the owner removes one",
  async (env) => {
    const { dialogs } = await startBoth(env, { MAX_GROUP_MEMBERS: 4 });
    const [a, b, c] = [crypto.randomUUID(), crypto.randomUUID(), crypto.randomUUID()];
    // B's and C's reads fail, so the group stays unread for them even while it is open: their
    // badges can only leave the total by their leaving.
    await env.sql("dialogs").unsafe(
      `alter table group_members add constraint no_reads
       check (user_id not in ('${b}', '${c}') or read_seq = 0)`,
    );
    const browser = await launch();
    try {
      const pageA = await signIn(browser, dialogs, a);
      const pageB = await signIn(browser, dialogs, b);
      const pageC = await signIn(browser, dialogs, c, 380);
      await pageA.click("#groupbtn");
      await pageA.fill("#grouptitle", "Crew");
      await pageA.fill("#groupmembers", b);
      await pageA.click("#creategroup");
      await waitText(pageA, "#dialogtitle", "Crew · 2 members");
      const group = await pageA.evaluate(() =>
        document.querySelector<HTMLElement>("#dialoglist li.open")?.dataset.group
      );
      assert.ok(group);
      const memberCount = async () =>
        (await call(dialogs, a, "GET", `/api/groups/${group}`)).memberCount;

      // The members panel opens from the header; a bad id is named and nothing is sent.
      assert.equal(await pageA.isVisible("#grouppanel"), false);
      await pageA.click("#membersbtn");
      await pageA.fill("#addids", `${c}, bob`);
      await pageA.click("#addbtn");
      await waitText(pageA, "#grouperror", "Not a user id (UUID): bob");
      assert.equal(await memberCount(), 2, "a bad id adds no one, not even the good ones");
      // The API's refusal (the group would be over MAX_GROUP_MEMBERS) shows its problem+json.
      const three = [crypto.randomUUID(), crypto.randomUUID(), crypto.randomUUID()];
      await pageA.fill("#addids", three.join("\n"));
      await pageA.click("#addbtn");
      await waitText(
        pageA,
        "#grouperror",
        "a group has at most 4 members: the group would have 5 members",
      );
      assert.equal(await memberCount(), 2);
      assert.equal(await pageA.inputValue("#addids"), three.join("\n"), "kept to fix");
      assert.equal(await pageA.textContent("#dialogtitle"), "Crew · 2 members");

      await pageA.fill("#addids", c.toUpperCase());
      await pageA.click("#addbtn");
      await waitText(pageA, "#groupnote", "Added 1 member.");
      await waitText(pageA, "#dialogtitle", "Crew · 3 members");
      assert.equal(await pageA.isVisible("#grouperror"), false, "the error is gone");
      assert.equal(await memberCount(), 3);
      assert.equal(
        await pageA.locator(`#chips [data-mention="${c}"]`).count(),
        1,
        "the added member can be mentioned",
      );

      await sendText(pageA, "welcome");
      await waitText(pageC, `${row("group", group)} .badge.count`, "1");
      await waitText(pageC, "#total", "1");
      await waitText(pageB, `${row("group", group)} .badge.count`, "1");
      await waitText(pageB, "#total", "1");

      // C, on a phone, opens the group; as a member only, C cannot remove B.
      await pageC.click(row("group", group));
      await pageC.waitForSelector(".msg >> text=welcome");
      await pageC.waitForSelector("#error >> text=unexpected error", { state: "attached" });
      await pageC.click("#membersbtn");
      assert.equal(await pageC.isVisible("#grouppanel"), true);
      await pageC.fill("#removeid", b);
      await pageC.click("#removebtn");
      await waitText(pageC, "#grouperror", "only the owner removes other members");
      assert.equal(await memberCount(), 3);
      const overflow = await pageC.evaluate(() =>
        document.documentElement.scrollWidth > innerWidth
      );
      assert.equal(overflow, false, "the panel fits the phone: no sideways scrolling");

      // C leaves: asked once more, then the group leaves C's list and, live, C's total.
      assert.equal(await total(pageC), "1", "still unread: C's reads fail");
      await pageC.click("#leavebtn");
      await waitText(pageC, "#leavebtn", "Leave for good? Press again");
      assert.equal(await memberCount(), 3, "the first press only asks");
      await pageC.click("#leavebtn");
      await waitText(pageC, "#listerror", "You left “Crew”.");
      assert.equal(await pageC.isVisible("#dialogs"), true, "back to the list on the phone");
      await pageC.waitForSelector(row("group", group), { state: "detached" });
      await waitText(pageC, "#total", "0");
      assert.equal(await pageC.title(), "Unread");
      assert.equal(await memberCount(), 2);
      await waitText(
        pageC,
        "#nodialogs",
        "No chats yet. Open a dialog with a peer's id, or create a group.",
      );

      // The owner removes B; B's page drops the group and its badge, and a second page of B's
      // that had it open closes it.
      const pageB2 = await signIn(browser, dialogs, b);
      await pageB2.click(row("group", group));
      await pageB2.waitForSelector(".msg >> text=welcome");
      await pageA.fill("#removeid", b);
      await pageA.click("#removebtn");
      await waitText(pageA, "#groupnote", `Removed ${b.slice(0, 8)}.`);
      await waitText(pageA, "#dialogtitle", "Crew · 1 member");
      await pageB.waitForSelector(row("group", group), { state: "detached" });
      await waitText(pageB, "#total", "0");
      await waitText(pageB2, "#listerror", "You are no longer a member of that group.");
      await waitText(pageB2, "#dialogtitle", "Pick a chat");
      assert.equal(await pageB2.locator(row("group", group)).count(), 0);
      const gone = await fetch(`${dialogs.url}/api/groups/${group}`, {
        headers: { Authorization: `Bearer ${await signToken(b, TEST_JWT_SECRET)}` },
      });
      assert.equal(gone.status, 404);
      await gone.body?.cancel();
      // The owner's group goes on.
      await sendText(pageA, "just me now");
    } finally {
      await browser.close();
    }
  },
);

integrationTest(
  "web page: it fits a phone: the list with errors where they show, then the chat with a way back",
  async (env) => {
    const { dialogs } = await startBoth(env);
    const browser = await launch();
    const me = crypto.randomUUID();
    try {
      const page = await signIn(browser, dialogs, me, 380);
      assert.equal(await page.textContent("#myid"), me, "the full own id is shown");
      await page.click("#copyid");
      await waitText(page, "#copyid", "Copied");
      assert.equal(await page.evaluate(() => navigator.clipboard.readText()), me);

      await page.fill("#peer", "not-a-uuid");
      await page.click("#newdialog button");
      assert.equal(await page.isVisible("#dialogs"), true, "a bad id keeps the list");
      assert.equal(await page.isVisible("#listerror"), true, "and its error shows there");
      assert.match(await page.textContent("#listerror") ?? "", /UUID/);
      await page.fill("#peer", me);
      await page.click("#newdialog button");
      assert.equal(await page.textContent("#listerror"), "That is you.");

      await page.fill("#peer", crypto.randomUUID());
      await page.click("#newdialog button");
      assert.equal(await page.isVisible("#dialogs"), false, "the list gives way to the dialog");
      assert.equal(await page.isVisible("#compose"), true);
      assert.equal(await page.textContent("#listerror"), "", "the error is gone");
      await page.click("#back");
      assert.equal(await page.isVisible("#dialogs"), true);
      await page.click("#groupbtn");
      await page.fill("#grouptitle", "Trip");
      await page.fill("#groupmembers", "bob");
      await page.click("#creategroup");
      assert.match(await page.textContent("#listerror") ?? "", /Not a user id \(UUID\): bob/);
      assert.equal(await page.isVisible("#listerror"), true);
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth > innerWidth);
      assert.equal(overflow, false, "no sideways scrolling");
    } finally {
      await browser.close();
    }
  },
);

integrationTest("web page: the development login is off unless DEV_LOGIN=true", async (env) => {
  const dialogs = await env.startDialogs();
  const res = await fetch(`${dialogs.url}/dev/login`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ userId: crypto.randomUUID() }),
  });
  assert.equal(res.status, 404);
  assert.equal(res.headers.get("Content-Type"), "application/problem+json");
  assert.equal((await res.json()).status, 404);
  const config = await (await fetch(`${dialogs.url}/config.json`)).json();
  assert.equal(config.devLogin, false);
  const page = await fetch(dialogs.url);
  assert.match(await page.text(), /<title>Unread<\/title>/);
});

Deno.test("the committed page bundle is built from dialogs/web/app.ts", async () => {
  const out = await Deno.makeTempFile({ suffix: ".js" });
  try {
    const res = await new Deno.Command(Deno.execPath(), {
      args: ["bundle", "--platform", "browser", "--minify", "-o", out, "dialogs/web/app.ts"],
      cwd: new URL("../", import.meta.url).pathname,
      stdout: "null",
      stderr: "piped",
    }).output();
    assert.equal(res.code, 0, new TextDecoder().decode(res.stderr));
    const committed = await Deno.readTextFile(new URL("../dialogs/web/app.js", import.meta.url));
    assert.equal(await Deno.readTextFile(out), committed, "run `deno task bundle` and commit");
  } finally {
    await Deno.remove(out);
  }
});
