/**
 * `shoal ps` and `shoal kill`: the caller's live runs, from their own run dir
 * only (another user's is not readable, and is never looked at), and signals
 * to a run's shoal process, which forwards them to the container.
 */
import { compareStrings } from "../compare.ts";
import type { LoadedConfig } from "../config/load.ts";
import { ShoalError, UsageError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { closeFd } from "../sys/dirfd.ts";
import { check, libc } from "../sys/libc.ts";
import { runBaseFor } from "./rundir.ts";
import { isRunProcess, liveRuns, type RunEntry, type RunState } from "./state.ts";

/** The live runs of the calling user, oldest first, with their bundles. */
function liveEntries(loaded: LoadedConfig, logger: Logger): RunEntry[] {
  const base = runBaseFor(loaded.runBase, false);
  if (base === undefined) return [];
  if (base.notice !== undefined) logger.warn(base.notice);
  return liveRuns(base).sort((a, b) => compareStrings(a.state.created, b.state.created));
}

/** The live runs of the calling user, oldest first. */
// deno-lint-ignore require-await
export async function listRuns(loaded: LoadedConfig, logger: Logger): Promise<RunState[]> {
  return liveEntries(loaded, logger).map((r) => r.state);
}

/** Signals that `shoal kill` accepts, by name and number. */
const SIGNALS: [Deno.Signal, number][] = [
  ["SIGHUP", 1],
  ["SIGINT", 2],
  ["SIGQUIT", 3],
  ["SIGKILL", 9],
  ["SIGUSR1", 10],
  ["SIGUSR2", 12],
  ["SIGTERM", 15],
];

/** `TERM`, `SIGTERM`, `term` or `15` as a signal name; a UsageError otherwise. */
export function parseSignal(text: string): Deno.Signal {
  const upper = text.toUpperCase();
  const found = SIGNALS.find(([name, n]) =>
    name === upper || name === `SIG${upper}` || String(n) === text
  );
  if (found === undefined) {
    throw new UsageError(`unknown signal '${text}'`, {
      hint: `use one of ${SIGNALS.map(([n]) => n.slice(3)).join(", ")} (name or number)`,
    });
  }
  return found[0];
}

/**
 * Sends `signal` to run `name`'s shoal, which passes it on to the container
 * (SIGKILL ends shoal, and with it the container and everything it made).
 */
export async function signalRun(
  loaded: LoadedConfig,
  name: string,
  signal: Deno.Signal,
  logger: Logger,
): Promise<RunState> {
  const run = liveEntries(loaded, logger).find((r) => r.state.name === name);
  if (run === undefined) {
    throw new ShoalError(`no running container named '${name}'`, {
      hint: "`shoal ps` lists yours",
    });
  }
  const number = SIGNALS.find(([n]) => n === signal)![1];
  const c = libc();
  // Held by a pidfd from before the second look to the signal: a pid that is
  // reused meanwhile is never signalled.
  const pidfd = c.pidfd_open === null ? -1 : await c.pidfd_open(run.state.pid, 0);
  try {
    if (!isRunProcess(run.state, Deno.uid()!, run.identity)) {
      throw new ShoalError(`the container '${name}' ended`, { hint: "`shoal ps` lists yours" });
    }
    if (pidfd >= 0 && c.pidfd_send_signal !== null) {
      check("pidfd_send_signal", c.pidfd_send_signal(pidfd, number, null, 0), name);
    } else {
      Deno.kill(run.state.pid, signal);
    }
  } finally {
    if (pidfd >= 0) closeFd(pidfd);
  }
  return run.state;
}
