/**
 * Sleeping without a timer: poll(2) on no descriptor, on a thread of Deno's
 * pool. A process's first setTimeout or clearTimeout loads Deno's timers,
 * ~5 ms, which every run would pay (tests/startup_rules_test.ts keeps timers
 * off the run path).
 */
import { libc } from "./libc.ts";

/** Resolves after `ms` milliseconds (a signal that interrupts poll does not cut it short). */
export async function sleep(ms: number): Promise<void> {
  const end = performance.now() + ms;
  const none = new Int32Array(0);
  for (let left = ms; left > 0; left = end - performance.now()) {
    await libc().poll(none, 0n, Math.min(Math.ceil(left), 2 ** 31 - 1));
  }
}
