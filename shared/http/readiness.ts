/** `/health/ready`: whether every dependency of the service answers. */
import type { OpenAPIHono } from "@hono/zod-openapi";
import type { Problem } from "../errors.ts";
import { problem } from "../errors.ts";
import type { AppEnv } from "./app_env.ts";
import { problemResponse } from "./error_handler.ts";

/** A named readiness check; resolves when the dependency answers. */
export type ReadinessCheck = () => Promise<unknown>;

/** Mounts `/health/ready`: 200 when every check answers within the timeout, else 503 naming each failure. */
export function mountReadiness(
  app: OpenAPIHono<AppEnv>,
  checks: Record<string, ReadinessCheck>,
  timeoutMs = 2_000,
): void {
  app.get("/health/ready", async (c) => {
    const results = await Promise.all(
      Object.entries(checks).map(async ([name, check]) => {
        try {
          await withTimeout(check(), timeoutMs, `${name} did not answer within ${timeoutMs} ms`);
          return [name, "ok"] as const;
        } catch (err) {
          return [name, err instanceof Error ? err.message : String(err)] as const;
        }
      }),
    );
    const failing = results.filter(([, r]) => r !== "ok");
    const checked = Object.fromEntries(results);
    if (!failing.length) return c.json({ status: "ok", checks: checked });
    const detail = `not ready: ${failing.map(([n, r]) => `${n} (${r})`).join(", ")}`;
    return problemResponse(c, { ...problem(503, "not-ready", detail), checks: checked } as Problem);
  });
}

/** Rejects with `message` if `promise` has not settled within `ms`. */
function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
