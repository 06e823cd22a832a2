/** Retrying an async step with exponential backoff until it succeeds or a deadline passes. */

/** Options of retry(). */
export interface RetryOptions {
  /** Give up (rethrowing the last error) once this much time has passed. */
  timeoutMs: number;
  /** First delay; doubles each attempt. */
  minDelayMs?: number;
  maxDelayMs?: number;
  /** Whether an error is worth another attempt; by default every error is. */
  retryIf?: (err: unknown) => boolean;
  /** Called before each wait, e.g. to log. */
  onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
}

/** Runs `fn` until it resolves; rethrows its last error after `timeoutMs`. */
export async function retry<T>(fn: () => Promise<T>, options: RetryOptions): Promise<T> {
  const deadline = Date.now() + options.timeoutMs;
  let delay = options.minDelayMs ?? 250;
  for (let attempt = 1;; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() + delay > deadline || options.retryIf?.(err) === false) throw err;
      options.onRetry?.(err, attempt, delay);
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, options.maxDelayMs ?? 5_000);
    }
  }
}
