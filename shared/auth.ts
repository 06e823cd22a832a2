/** JWT bearer authentication: HS256 tokens whose `sub` is the caller's user id. */
import type { MiddlewareHandler } from "hono";
import { sign, verify } from "hono/jwt";
import { z } from "zod";
import { unauthorized } from "./errors.ts";

/** Per-request variables set by the auth middleware. */
export type AuthVariables = { userId: string };

const Sub = z.uuid();

/** Signs a token for `userId` valid for `ttlSeconds`. */
export function signToken(
  userId: string,
  secret: string,
  ttlSeconds = 24 * 60 * 60,
  now = Date.now(),
): Promise<string> {
  const iat = Math.floor(now / 1000);
  return sign({ sub: userId, iat, exp: iat + ttlSeconds }, secret, "HS256");
}

/** Verifies a token and returns its subject; throws a 401 AppError otherwise. */
export async function verifyToken(token: string, secret: string): Promise<string> {
  return (await verifyTokenClaims(token, secret)).userId;
}

/** Verifies a token and returns its subject and expiry (seconds since the epoch, if any). */
export async function verifyTokenClaims(
  token: string,
  secret: string,
): Promise<{ userId: string; exp?: number }> {
  let payload: Record<string, unknown>;
  try {
    payload = await verify(token, secret, "HS256");
  } catch (cause) {
    const name = (cause as Error)?.name ?? "";
    const detail = name === "JwtTokenExpired" ? "the token has expired" : "the token is invalid";
    throw Object.assign(unauthorized(detail), { cause });
  }
  const sub = Sub.safeParse(payload.sub);
  if (!sub.success) throw unauthorized("the token's sub claim is not a user id (UUID)");
  return {
    userId: sub.data.toLowerCase(),
    ...(typeof payload.exp === "number" ? { exp: payload.exp } : {}),
  };
}

/** Most tokens one middleware remembers as verified. */
const VERIFIED_TOKENS = 50_000;

/**
 * Requires `Authorization: Bearer <JWT>` and sets `userId`. On `queryTokenPaths` the token may come
 * as `?access_token=` instead, because browsers' EventSource cannot set headers.
 */
export function bearerAuth(
  options: { secret: string; queryTokenPaths?: string[] },
): MiddlewareHandler<{ Variables: AuthVariables }> {
  const verified = new Map<string, { userId: string; exp?: number }>();
  return async (c, next) => {
    const header = c.req.header("Authorization");
    let token: string | undefined;
    if (header !== undefined) {
      const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
      if (!match) throw unauthorized("the Authorization header must be 'Bearer <token>'");
      token = match[1];
    } else if (options.queryTokenPaths?.includes(c.req.path)) {
      token = c.req.query("access_token") || undefined;
    }
    if (!token) throw unauthorized("a bearer token is required");
    // A token verified before is the same bytes with the same signature: only its expiry can change.
    const known = verified.get(token);
    if (known && (known.exp === undefined || known.exp * 1000 > Date.now())) {
      c.set("userId", known.userId);
    } else {
      const claims = await verifyTokenClaims(token, options.secret);
      if (verified.size >= VERIFIED_TOKENS) verified.delete(verified.keys().next().value!);
      verified.set(token, claims);
      c.set("userId", claims.userId);
    }
    await next();
  };
}
