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
  return sub.data.toLowerCase();
}

/**
 * Requires `Authorization: Bearer <JWT>` and sets `userId`. On `queryTokenPaths` the token may come
 * as `?access_token=` instead, because browsers' EventSource cannot set headers.
 */
export function bearerAuth(
  options: { secret: string; queryTokenPaths?: string[] },
): MiddlewareHandler<{ Variables: AuthVariables }> {
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
    c.set("userId", await verifyToken(token, options.secret));
    await next();
  };
}
