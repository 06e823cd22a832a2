/** `deno task token <userUuid> [ttlSeconds]`: prints a JWT for the user, signed with JWT_SECRET. */
import { z } from "zod";
import { signToken } from "../shared/auth.ts";
import { commonEnv, ConfigError, parseEnv } from "../shared/config.ts";

const [userId, ttl] = Deno.args;
if (!userId || !z.uuid().safeParse(userId).success) {
  console.error("usage: deno task token <userUuid> [ttlSeconds]  (the user id must be a UUID)");
  Deno.exit(2);
}
const ttlSeconds = ttl === undefined ? 24 * 60 * 60 : Number(ttl);
if (!Number.isInteger(ttlSeconds) || ttlSeconds <= 0) {
  console.error("token: ttlSeconds must be a positive whole number");
  Deno.exit(2);
}
try {
  const { JWT_SECRET } = parseEnv({ JWT_SECRET: commonEnv.JWT_SECRET }, Deno.env.toObject());
  console.log(await signToken(userId.toLowerCase(), JWT_SECRET, ttlSeconds));
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  console.error(`token: ${err.message}`);
  Deno.exit(1);
}
