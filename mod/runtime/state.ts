/**
 * What `shoal ps` and `shoal kill` know about a run: a small JSON file in its
 * bundle dir, written by the shoal process that supervises the run. A run is
 * live while that process is, and the file is only a claim: its pid alone
 * could have been reused (the file also records the process's start time,
 * /proc/PID/stat field 22), so a pid counts only while it is the caller's own
 * process, started then, holding that bundle dir open (isRunProcess).
 *
 * Sync file calls: `shoal run` lists the runs on every start, and each async
 * call costs ~0.5 ms in a fresh process (bench/startup.ts).
 */
import {
  array,
  boolean,
  integer,
  nonEmpty,
  object,
  oneOf,
  optional,
  type Out,
  string,
  tryShape,
} from "../shape.ts";
import { closeFd, fdPath, type FdStat, fstat, O, openAt, S_IFREG, statPath } from "../sys/dirfd.ts";
import {
  BUNDLE,
  type Bundle,
  bundleFile,
  bundleNames,
  removeBundle,
  type RunBase,
} from "./rundir.ts";

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
  /** Path B: the guard's holder, which `runc exec` enters (launch.ts ExecTarget). */
  holder: optional(integer(1)),
  /** Path B: whether root of the container's user namespace is the user. */
  rootIsUser: optional(boolean),
};
const runState = object(runStateShape);
export type RunState = Out<typeof runStateShape>;

export interface RunEntry {
  /** The bundle dir's name in the run base. */
  name: string;
  state: RunState;
  /** The bundle dir, as its supervising shoal holds it. */
  identity: Identity;
}

/** Start time of process `pid` (clock ticks since boot), or undefined when there is none. */
export function processStartTime(pid: number): number | undefined {
  const start = Number(statFields(pid)?.[19]);
  return Number.isInteger(start) ? start : undefined;
}

/** Whether `pid` is the process that started at `startTime` and has not ended (processRuns). */
export function runsSince(pid: number, startTime: number): boolean {
  const fields = statFields(pid);
  return fields !== undefined && fields[0] !== "Z" && fields[0] !== "X" &&
    Number(fields[19]) === startTime;
}

/** Whether `pid` runs: it exists and has not ended (a zombie waits only to be reaped). */
export function processRuns(pid: number): boolean {
  const state = statFields(pid)?.[0];
  return state !== undefined && state !== "Z" && state !== "X";
}

/** The fields of /proc/PID/stat from the third (the state) on; undefined when it is gone. */
function statFields(pid: number): string[] | undefined {
  let stat: string;
  try {
    stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  } catch {
    return undefined;
  }
  // The command name (field 2) is in parentheses and may itself contain spaces and ')'.
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
}

/** What a run's bundle dir is: the supervising shoal holds it open for the run's life. */
interface Identity {
  dev: string;
  ino: bigint;
}

function identityOf(info: FdStat): Identity {
  return { dev: info.dev, ino: info.ino };
}

function same(a: Identity, b: Identity): boolean {
  return a.dev === b.dev && a.ino === b.ino;
}

/**
 * Whether `pid` is the shoal process that supervises the run of `bundle`: the
 * same process that wrote the state (its start time), the caller's (its uid,
 * its user namespace), holding that very bundle dir open. A pid is never
 * taken on trust from the file.
 */
export function isRunProcess(state: RunState, uid: number, bundle: Identity): boolean {
  const pid = state.pid;
  try {
    if (processStartTime(pid) !== state.startTime) return false;
    if (statPath(`/proc/${pid}`).uid !== uid) return false;
    const ns = (p: string) => identityOf(statPath(`${p}/ns/user`));
    if (!same(ns(`/proc/${pid}`), ns("/proc/self"))) return false;
    for (const e of Deno.readDirSync(`/proc/${pid}/fd`)) {
      try {
        if (same(identityOf(statPath(`/proc/${pid}/fd/${e.name}`)), bundle)) return true;
      } catch { /* closed meanwhile, or not a file one can stat */ }
    }
    return false;
  } catch {
    return false; // gone, or not ours to look at
  }
}

/**
 * Writes the state atomically (readers never see half a file). Async for the
 * supervisor, which awaits it; the calls are sync (see the header).
 */
// deno-lint-ignore require-await
export async function writeState(bundle: Bundle, state: RunState): Promise<void> {
  const tmp = bundleFile(bundle, `.${BUNDLE.state}.tmp`);
  Deno.writeTextFileSync(tmp, JSON.stringify(state, null, 2) + "\n", { mode: 0o600 });
  Deno.renameSync(tmp, bundleFile(bundle, BUNDLE.state));
}

/** More than any state shoal writes: a larger file is not one. */
const MAX_STATE_BYTES = 64 * 1024;

/**
 * The state of bundle `name` in the run base; undefined when it is missing or
 * not a run's: a regular file of the caller's (opened without following a
 * link or waiting on a FIFO), holding a run state.
 */
export function readState(base: RunBase, name: string): RunState | undefined {
  return readStateAt(base.fd, `${name}/${BUNDLE.state}`, base.uid);
}

/** readState of the state file at `path` in directory `dirfd`. */
function readStateAt(dirfd: number, path: string, uid: number): RunState | undefined {
  let fd: number;
  try {
    fd = openAt(dirfd, path, O.RDONLY | O.NONBLOCK);
  } catch {
    return undefined;
  }
  try {
    const info = fstat(fd);
    if (info.type !== S_IFREG || info.uid !== uid || info.size > MAX_STATE_BYTES) {
      return undefined;
    }
    // The open file itself: /proc/self/fd/N is that inode, whatever the name points to now.
    const parsed = tryShape(runState, JSON.parse(Deno.readTextFileSync(fdPath(fd))));
    return parsed.ok ? parsed.value : undefined;
  } catch {
    return undefined;
  } finally {
    closeFd(fd);
  }
}

/** A bundle dir younger than this without a state file may be a run still being set up. */
const SETUP_GRACE_MS = 60_000;

/**
 * The live runs in the run base, by name. Bundle dirs of runs whose shoal is
 * gone (killed with SIGKILL, machine crash) are removed on the way: their
 * processes and mounts went with them (see the launchers), only files
 * remain. Only the caller's own bundles are looked at (rundir.ts bundleNames).
 */
export function liveRuns(base: RunBase): RunEntry[] {
  const live: RunEntry[] = [];
  // bundleNames judged each a directory of the caller's, in a directory only the
  // caller may write. Each is then looked at, and removed, through a descriptor: a
  // name may be freed and taken by a new run meanwhile (removeBundle).
  for (const name of bundleNames(base)) {
    let fd: number;
    try {
      fd = openAt(base.fd, name, O.RDONLY | O.DIRECTORY);
    } catch {
      continue; // removed meanwhile
    }
    const info = fstat(fd);
    const state = readStateAt(fd, BUNDLE.state, base.uid);
    if (state !== undefined && isRunProcess(state, base.uid, identityOf(info))) {
      live.push({ name, state, identity: identityOf(info) });
      closeFd(fd);
      continue;
    }
    if (state === undefined && Date.now() - info.mtimeMs <= SETUP_GRACE_MS) {
      closeFd(fd);
      continue;
    }
    try {
      removeBundle(base, name, fd);
    } catch { /* what stays is looked at again by the next sweep */ }
  }
  return live;
}
