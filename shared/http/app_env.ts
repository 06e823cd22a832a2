/** The Hono environment of both services: what every route can read from the request's context. */

/** Per-request variables every route can read. */
export type AppVariables = { requestId: string; userId: string; tokenExpiresAt?: number };

/** The Hono environment of both services. */
export type AppEnv = { Variables: AppVariables };
