/// <reference lib="dom" />
/** The web page in headless Chromium: two users, live badges, reads and a failed send. */
import assert from "node:assert/strict";
import { type Browser, chromium, type Page } from "playwright-core";
import { integrationTest, type Service, type TestEnv } from "../testing/env.ts";
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

async function startBoth(env: TestEnv) {
  const [dialogsPort, countersPort] = [freePort(), freePort()];
  const counters = await env.startCounters({
    overrides: { PORT: countersPort, CORS_ORIGINS: [`http://127.0.0.1:${dialogsPort}`] },
  });
  const dialogs = await env.startDialogs({
    overrides: {
      PORT: dialogsPort,
      DEV_LOGIN: true,
      COUNTERS_PUBLIC_URL: `http://127.0.0.1:${countersPort}`,
    },
  });
  return { dialogs, counters };
}

async function signIn(browser: Browser, dialogs: Service, userId: string, width = 1000) {
  const context = await browser.newContext({ viewport: { width, height: 700 } });
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

integrationTest(
  "web page: A sends and B's badge rises live; B reads it and the badge falls; a refused send shows failed",
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

      // No reload: the badge and the title follow the counters stream.
      await pageB.waitForFunction(() => document.getElementById("total")?.textContent === "1");
      assert.equal(await pageB.title(), "(1) Unread");
      await pageB.waitForSelector(`#dialoglist li[data-peer="${a}"] .badge:text("1")`);
      const screenshot = Deno.env.get("SCREENSHOT");
      if (screenshot) await pageB.screenshot({ path: screenshot });

      await pageB.click(`#dialoglist li[data-peer="${a}"]`);
      await pageB.waitForSelector(".msg >> text=Hello from A");
      await pageB.waitForFunction(() => document.getElementById("total")?.textContent === "0");
      assert.equal(await pageB.title(), "Unread");

      // With the dialog open, a new message is shown and read at once, live.
      await pageA.fill("#text", "Second");
      await pageA.click("#compose button");
      await pageB.waitForSelector(".msg >> text=Second");
      await pageB.waitForFunction(() => document.getElementById("total")?.textContent === "0");

      await env.sql(
        "counters",
      )`alter table unread_counters add constraint unread_max check (unread <= 0)`;
      await pageB.evaluate(() => document.getElementById("back")?.click());
      await pageA.fill("#text", "Refused");
      await pageA.click("#compose button");
      await pageA.waitForSelector(".msg.mine.failed >> text=Refused");
      assert.match(await pageA.textContent(".msg.mine.failed .state") ?? "", /failed/);
      assert.equal(await total(pageB), "0", "a failed message never shows up as unread");
    } finally {
      await browser.close();
    }
  },
);

integrationTest(
  "web page: it fits a phone: the list, then the dialog with a way back",
  async (env) => {
    const { dialogs } = await startBoth(env);
    const browser = await launch();
    try {
      const page = await signIn(browser, dialogs, crypto.randomUUID(), 380);
      await page.fill("#peer", crypto.randomUUID());
      await page.click("#newdialog button");
      assert.equal(await page.isVisible("#dialogs"), false, "the list gives way to the dialog");
      assert.equal(await page.isVisible("#compose"), true);
      await page.click("#back");
      assert.equal(await page.isVisible("#dialogs"), true);
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
