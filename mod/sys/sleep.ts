/**
 * Sleeping without a timer: poll(2) on a thread of Deno's pool. A process's
 * first setTimeout or clearTimeout loads Deno's timers, ~5 ms, which every
 * run would pay (tests/startup_rules_test.ts keeps timers off the run path).
 */
import { check, libc, O, ptr } from "./libc.ts";

const POLLIN = 1;

/** Resolves after `ms` milliseconds (a signal that interrupts poll does not cut it short). */
export async function sleep(ms: number): Promise<void> {
  await pollFor(ms, new Int32Array(0));
}

/** A sleep that `stop` ends at once, for a timeout raced against a wait. */
export interface StoppableSleep {
  /** Resolves when `ms` have passed, or at once after `stop`. */
  slept: Promise<void>;
  stop(): void;
}

/**
 * A sleep of `ms` that `stop` ends, so that a timeout that lost its race does
 * not keep a thread of Deno's pool until it would have expired: poll(2) also
 * waits on a pipe, whose write end `stop` closes.
 */
export function stoppableSleep(ms: number): StoppableSleep {
  const c = libc();
  const pipe = new Int32Array(2);
  check("pipe2", c.pipe2(ptr(pipe), O.CLOEXEC));
  let open = true;
  const stop = () => {
    if (open) c.close(pipe[1]!);
    open = false;
  };
  const slept = pollFor(ms, new Int32Array([pipe[0]!, POLLIN])).finally(() => {
    c.close(pipe[0]!);
    stop();
  });
  return { slept, stop };
}

/** Polls `fds` (struct pollfd: int fd, short events, short revents) for `ms` or until one is ready. */
async function pollFor(ms: number, fds: Int32Array<ArrayBuffer>): Promise<void> {
  const end = performance.now() + ms;
  for (let left = ms; left > 0; left = end - performance.now()) {
    const ready = await libc().poll(
      fds,
      BigInt(fds.length / 2),
      Math.min(Math.ceil(left), 2 ** 31 - 1),
    );
    if (ready > 0) return;
  }
}
