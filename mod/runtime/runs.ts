/**
 * `shoal ps` and `shoal kill`: the caller's live runs, from their own run dir
 * only (another user's is not readable, and is never looked at), and signals
 * to a run's shoal process, which forwards them to the container.
 */
import { compareStrings } from "../compare.ts";
import type { LoadedConfig } from "../config/load.ts";
import { ShoalError, UsageError } from "../errors.ts";
import { liveRuns, type RunState } from "./state.ts";

/** The live runs of the calling user, oldest first. */
export async function listRuns(loaded: LoadedConfig): Promise<RunState[]> {
  const runs = await liveRuns(loaded.paths.runDir);
  return runs.map((r) => r.state).sort((a, b) => compareStrings(a.created, b.created));
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
): Promise<RunState> {
  const run = (await listRuns(loaded)).find((r) => r.name === name);
  if (run === undefined) {
    throw new ShoalError(`no running container named '${name}'`, {
      hint: "`shoal ps` lists yours",
    });
  }
  Deno.kill(run.pid, signal);
  return run;
}
