/**
 * What `shoal ps` and `shoal kill` know about a run: a small JSON file in its
 * bundle dir, written by the shoal process that supervises the run. A run is
 * live while that process is: its pid alone could have been reused by then, so
 * the file also records the process's start time (/proc/PID/stat field 22),
 * and a pid whose start time differs is another process.
 *
 * Sync file calls: `shoal run` lists the runs on every start, and each async
 * call costs ~0.5 ms in a fresh process (bench/startup.ts).
 */
import { join } from "../path.ts";
import { array, integer, nonEmpty, object, oneOf, type Out, string, tryShape } from "../shape.ts";
import { BUNDLE, bundleNames, removeBundleDir } from "./rundir.ts";

const runStateShape = {
  name: nonEmpty,
  image: string(),
  /** The supervising shoal process: signals for the container go to it. */
  pid: integer(1),
  /** Its start time in clock ticks since boot. */
  startTime: integer(0),
  /** runc's container id. */
  id: string(),
  /** ISO 8601. */
  created: string(),
  /** Written once the container's process is started; a run whose shoal is gone is not listed. */
  status: oneOf(["running"]),
  /** "helper" (kernel squashfs under shoal-mount) or "unprivileged" (squashfuse). */
  runPath: oneOf(["helper", "unprivileged"]),
  command: array(string()),
};
const runState = object(runStateShape);
export type RunState = Out<typeof runStateShape>;

export interface RunEntry {
  dir: string;
  state: RunState;
}

/** Start time of process `pid` (clock ticks since boot), or undefined when there is none. */
export function processStartTime(pid: number): number | undefined {
  let stat: string;
  try {
    stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  } catch {
    return undefined;
  }
  // The command name (field 2) is in parentheses and may itself contain spaces and ')'.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const start = Number(fields[19]);
  return Number.isInteger(start) ? start : undefined;
}

/** Whether the shoal process of the run still exists (the same one, not a reused pid). */
export function isLive(state: RunState): boolean {
  return processStartTime(state.pid) === state.startTime;
}

/**
 * Writes the state atomically (readers never see half a file). Async for the
 * supervisor, which awaits it; the calls are sync (see the header).
 */
// deno-lint-ignore require-await
export async function writeState(dir: string, state: RunState): Promise<void> {
  const tmp = join(dir, `.${BUNDLE.state}.tmp`);
  Deno.writeTextFileSync(tmp, JSON.stringify(state, null, 2) + "\n", { mode: 0o600 });
  Deno.renameSync(tmp, join(dir, BUNDLE.state));
}

/** The state in bundle dir `dir`; undefined when it is missing or not a run's. */
export function readState(dir: string): RunState | undefined {
  try {
    const parsed = tryShape(runState, JSON.parse(Deno.readTextFileSync(join(dir, BUNDLE.state))));
    return parsed.ok ? parsed.value : undefined;
  } catch {
    return undefined;
  }
}

/** A bundle dir younger than this without a state file may be a run still being set up. */
const SETUP_GRACE_MS = 60_000;

/**
 * The live runs in run dir `base`, by name. Bundle dirs of runs whose shoal
 * is gone (killed with SIGKILL, machine crash) are removed on the way: their
 * processes and mounts went with them (see the launchers), only files remain.
 */
export function liveRuns(base: string): RunEntry[] {
  const live: RunEntry[] = [];
  for (const name of bundleNames(base)) {
    const dir = join(base, name);
    const state = readState(dir);
    if (state !== undefined && isLive(state)) {
      live.push({ dir, state });
      continue;
    }
    if (state === undefined && !olderThan(dir, SETUP_GRACE_MS)) continue;
    try {
      removeBundleDir(dir);
    } catch { /* another shoal is removing it too */ }
  }
  return live;
}

function olderThan(dir: string, ms: number): boolean {
  try {
    const info = Deno.lstatSync(dir);
    return Date.now() - (info.mtime?.getTime() ?? 0) > ms;
  } catch {
    return false;
  }
}
