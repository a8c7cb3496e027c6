/** Bounded retries with exponential backoff, for transient registry failures only. */
import { RegistryError } from "./responses.ts";

export interface RetryPolicy {
  /** Retries after the first attempt (config pull.retries). */
  retries: number;
  /** Delay before the first retry; doubled each time, capped at 30 s. */
  baseDelayMs: number;
}

export function isTransient(err: unknown): boolean {
  return err instanceof RegistryError && err.transient;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Runs `attempt` until it succeeds, fails with a non-transient error, or the
 * retries are used up; `onRetry` hears about each failure that is retried.
 */
export async function withRetries<T>(
  policy: RetryPolicy,
  attempt: (n: number) => Promise<T>,
  onRetry: (err: unknown, n: number, delayMs: number) => void = () => {},
): Promise<T> {
  for (let n = 0;; n++) {
    try {
      return await attempt(n);
    } catch (err) {
      if (n >= policy.retries || !isTransient(err)) throw err;
      const delay = Math.min(policy.baseDelayMs * 2 ** n, 30_000);
      onRetry(err, n + 1, delay);
      await sleep(delay);
    }
  }
}
