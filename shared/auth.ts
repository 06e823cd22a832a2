/** JWT bearer authentication: HS256 tokens whose `sub` is the caller's user id. */
import type { MiddlewareHandler } from "hono";
import { sign, verify } from "hono/jwt";
import { z } from "zod";
import { unauthorized } from "./errors.ts";

/** Per-request variables set by the auth middleware. */
export type AuthVariables = {
  userId: string;
  /** When the request's token expires (ms since the epoch); unset for a token without `exp`. */
  tokenExpiresAt?: number;
};

/** What a verified token says: its subject and its expiry (seconds since the epoch, if any). */
export interface TokenClaims {
  userId: string;
  exp?: number;
}

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

/** Verifies a token and returns its subject and expiry (seconds since the epoch, if any). */
export async function verifyTokenClaims(token: string, secret: string): Promise<TokenClaims> {
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

/** Most verified tokens remembered by default. */
const VERIFIED_TOKENS = 50_000;

/**
 * Tokens verified before, so a request carrying one skips the HMAC: a token seen again is the same
 * bytes with the same signature, and only its expiry can change.
 */
export interface VerifiedTokens {
  /** The user id of `token` if it was verified before and has not expired since. */
  userIdOf(token: string): string | undefined;
  /** The claims of `token` if it was verified before and has not expired since. */
  claimsOf(token: string): TokenClaims | undefined;
  /** Verifies `token` (a 401 AppError if it is not valid), remembers it and returns its user id. */
  verify(token: string): Promise<string>;
  /** verify(), returning the token's claims. */
  verifyClaims(token: string): Promise<TokenClaims>;
}

/** Remembers up to `max` tokens verified with `secret`, the oldest forgotten first. */
export function createVerifiedTokens(
  secret: string,
  options: { max?: number; now?: () => number } = {},
): VerifiedTokens {
  const max = options.max ?? VERIFIED_TOKENS;
  const now = options.now ?? Date.now;
  const verified = new Map<string, TokenClaims>();
  const claimsOf = (token: string) => {
    const known = verified.get(token);
    if (!known) return undefined;
    if (known.exp !== undefined && known.exp * 1000 <= now()) {
      verified.delete(token);
      return undefined;
    }
    return known;
  };
  const verifyClaims = async (token: string) => {
    const claims = await verifyTokenClaims(token, secret);
    if (verified.size >= max) verified.delete(verified.keys().next().value!);
    verified.set(token, claims);
    return claims;
  };
  return {
    userIdOf: (token) => claimsOf(token)?.userId,
    claimsOf,
    verify: async (token) => (await verifyClaims(token)).userId,
    verifyClaims,
  };
}

const BEARER = /^Bearer\s+(\S+)\s*$/i;

/** The token of an `Authorization: Bearer <token>` header; undefined if the header has another form. */
export function bearerToken(header: string): string | undefined {
  return BEARER.exec(header)?.[1];
}

/**
 * Requires `Authorization: Bearer <JWT>` and sets `userId` and `tokenExpiresAt`. On `queryTokenPaths` the token may come
 * as `?access_token=` instead, because browsers' EventSource cannot set headers.
 */
export function bearerAuth(
  options: { tokens: VerifiedTokens; queryTokenPaths?: string[] },
): MiddlewareHandler<{ Variables: AuthVariables }> {
  const { tokens } = options;
  return async (c, next) => {
    const header = c.req.header("Authorization");
    let token: string | undefined;
    if (header !== undefined) {
      token = bearerToken(header);
      if (!token) throw unauthorized("the Authorization header must be 'Bearer <token>'");
    } else if (options.queryTokenPaths?.includes(c.req.path)) {
      token = c.req.query("access_token") || undefined;
    }
    if (!token) throw unauthorized("a bearer token is required");
    const claims = tokens.claimsOf(token) ?? await tokens.verifyClaims(token);
    c.set("userId", claims.userId);
    if (claims.exp !== undefined) c.set("tokenExpiresAt", claims.exp * 1000);
    await next();
  };
}
