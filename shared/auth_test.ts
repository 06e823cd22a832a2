import assert from "node:assert/strict";
import { sign } from "hono/jwt";
import { AppError } from "./errors.ts";
import { signToken, verifyTokenClaims } from "./auth.ts";

const SECRET = "unit-test-secret-0123456789";
const USER = "6f1c1d5e-8a63-4c4e-9c51-2a0f4f5b7e10";

async function rejects401(token: string, detail: RegExp) {
  await assert.rejects(verifyTokenClaims(token, SECRET), (err: unknown) => {
    assert.ok(err instanceof AppError);
    assert.equal(err.status, 401);
    assert.match(err.message, detail);
    return true;
  });
}

Deno.test("verifyTokenClaims() returns the sub of a valid token", async () => {
  const claims = await verifyTokenClaims(await signToken(USER, SECRET), SECRET);
  assert.equal(claims.userId, USER);
});

Deno.test("verifyTokenClaims() lower-cases an upper-case UUID subject", async () => {
  const claims = await verifyTokenClaims(await signToken(USER.toUpperCase(), SECRET), SECRET);
  assert.equal(claims.userId, USER);
});

Deno.test("verifyTokenClaims() rejects an expired token", async () => {
  const token = await signToken(USER, SECRET, 60, Date.now() - 120_000);
  await rejects401(token, /expired/);
});

Deno.test("verifyTokenClaims() rejects a token signed with another secret", async () => {
  await rejects401(await signToken(USER, "another-secret-0123456789"), /invalid/);
});

Deno.test("verifyTokenClaims() rejects garbage and a sub that is not a UUID", async () => {
  await rejects401("not.a.jwt", /invalid/);
  await rejects401(await sign({ sub: "alice" }, SECRET, "HS256"), /sub/);
  await rejects401(await sign({ iat: 1 }, SECRET, "HS256"), /sub/);
});

Deno.test("bearerAuth() remembers a verified token but still refuses it once it expires", async () => {
  const { Hono } = await import("hono");
  const { bearerAuth, createVerifiedTokens } = await import("./auth.ts");
  const app = new Hono<{ Variables: { userId: string } }>();
  app.onError((err, c) => c.text(err.message, (err as AppError).status as 401));
  app.use(bearerAuth({ tokens: createVerifiedTokens(SECRET) }));
  app.get("/", (c) => c.text(c.get("userId")));
  const token = await signToken(USER, SECRET, 1);
  const get = () => app.request("/", { headers: { Authorization: `Bearer ${token}` } });
  assert.equal(await (await get()).text(), USER);
  assert.equal(await (await get()).text(), USER);
  await new Promise((r) => setTimeout(r, 2_100));
  const expired = await get();
  assert.equal(expired.status, 401);
  assert.match(await expired.text(), /expired/);
});

Deno.test("bearerAuth() sets tokenExpiresAt from the token's exp, verified or remembered", async () => {
  const { Hono } = await import("hono");
  const { bearerAuth, createVerifiedTokens } = await import("./auth.ts");
  const app = new Hono<{ Variables: { userId: string; tokenExpiresAt?: number } }>();
  app.use(bearerAuth({ tokens: createVerifiedTokens(SECRET) }));
  app.get("/", (c) => c.text(String(c.get("tokenExpiresAt"))));
  const now = Date.now();
  const token = await signToken(USER, SECRET, 600, now);
  const expected = String((Math.floor(now / 1000) + 600) * 1000);
  const get = () => app.request("/", { headers: { Authorization: `Bearer ${token}` } });
  assert.equal(await (await get()).text(), expected, "verified now");
  assert.equal(await (await get()).text(), expected, "remembered");
});
