/**
 * A process exec'd into a started container (`runc exec`, launch.ts
 * execArgv): a rank joining its step's container (join.ts), or `shoal exec`
 * (execInRun, below). Its files (the process's config, runc's pid file and log) live
 * in a directory of their own in the container's bundle, removed when it
 * ends (or with the bundle). It is supervised as a run's container is
 * (supervise.ts): signals reach runc exec, which relays them to the process;
 * the terminal, stdin and the PMI descriptor (moved as for run, pmi.ts)
 * reach it; its exit status is returned. When the container ends, the path's
 * machinery kills the process and runc exec reports that.
 */
import { join } from "../path.ts";
import type { LoadedConfig } from "../config/load.ts";
import { ShoalError, UsageError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { EnvOption } from "./env.ts";
import { currentCaller, userOptionIsRoot } from "./user_option.ts";
import { liveRuns, type RunState } from "./state.ts";
import { closeFd, fdPath, mkdirAt, O, openAt, removeTreeAt } from "../sys/dirfd.ts";
import { libc } from "../sys/libc.ts";
import { CAP_NAMES } from "../sys/caps.ts";
import type { FdMove } from "./pmi.ts";
import { execArgv, type ExecTarget } from "./launch.ts";
import { MAIN_PID_FILE, readPid } from "./main_exit.ts";
import type { OciProcess, OciSpec } from "./oci.ts";
import { runcFailure } from "./runc_error.ts";
import { readLog, type RunOutcome } from "./run.ts";
import { BUNDLE, type Bundle, bundleFile, runBaseFor } from "./rundir.ts";
import { type EarlyStop, holdStopSignals, supervise } from "./supervise.ts";

/** runc exec's own fatal error on stderr. */
const EXEC_FATAL_PREFIX = "exec failed: ";
/** shoal-enter's own (enter.c): a namespace it could not enter, a directory it could not reach. */
const ENTER_FATAL_PREFIX = "shoal-enter: ";
const SIGKILL = 9;

export interface ExecRequest {
  runc: string;
  target: ExecTarget;
  /** The container's bundle, open; `dev` its filesystem (for the cleanup). */
  bundle: Bundle;
  dev: string;
  process: OciProcess;
  stdin: boolean;
  /** `--preserve-fds`, with the moved PMI descriptors (pmi.ts). */
  preserveFds: number;
  moves: FdMove[];
  stopTimeout: number;
  early?: EarlyStop;
  /**
   * Enter the container directly (shoal-enter, helper/enter.c) instead of
   * through runc exec: its first process's pid, and the program. For a
   * process without a terminal, in a container without a seccomp profile or
   * a private pid namespace (the caller decides).
   */
  enter?: { shim: string; pid: number };
}

/** Runs `r.process` in the container to its end. */
export async function execProcess(r: ExecRequest): Promise<RunOutcome> {
  if (r.enter !== undefined && !r.process.terminal) return await enterProcess(r, r.enter);
  const name = `exec-${crypto.randomUUID().slice(0, 12)}`;
  mkdirAt(r.bundle.fd, name, 0o700);
  const fd = openAt(r.bundle.fd, name, O.RDONLY | O.DIRECTORY);
  try {
    const dir = join(r.bundle.path, name);
    Deno.writeTextFileSync(fdPath(fd, "process.json"), JSON.stringify(r.process));
    const argv = execArgv(r.runc, r.target, [
      "--process",
      join(dir, "process.json"),
      "--pid-file",
      join(dir, MAIN_PID_FILE),
      ...(r.preserveFds > 0 ? ["--preserve-fds", String(r.preserveFds)] : []),
    ], join(dir, "runc.log"));
    const result = await supervise({
      argv,
      stdin: r.stdin || r.process.terminal,
      tty: r.process.terminal,
      holdPrefix: EXEC_FATAL_PREFIX,
      bundle: fdPath(fd),
      stopTimeout: r.stopTimeout,
      // The process and runc exec: its other processes end with the container.
      end: (child) => {
        const pid = readPid(fdPath(fd, MAIN_PID_FILE));
        if (pid !== undefined) libc().kill(pid, SIGKILL);
        libc().kill(child, SIGKILL);
      },
      moves: r.moves,
      early: r.early,
    });
    const failure = result.held.length > 0
      ? runcFailure(readLog(fdPath(fd, "runc.log")))
      : undefined;
    if (failure !== undefined) return { status: failure.status, error: failure.error };
    result.release();
    return { status: result.status };
  } finally {
    closeFd(fd);
    removeTreeAt(r.bundle.fd, name, r.dev);
  }
}

/** What `shoal exec` was asked. */
export interface ExecInRun {
  /** The run's name or id, as `shoal ps` shows it. */
  name: string;
  command: string[];
  env: EnvOption[];
  workdir?: string;
  tty: boolean;
  stdin: boolean;
  /** `-u`: only the container's own identity (user_option.ts). */
  user?: string;
}

/**
 * `shoal exec`: runs a command in a running container of the caller's, as
 * the container's user, with its environment (plus `-e`) and working
 * directory (or `-w`); returns the command's status. The command ends when
 * the container does (Podman's exec).
 */
export async function execInRun(
  loaded: LoadedConfig,
  req: ExecInRun,
  logger: Logger,
): Promise<RunOutcome> {
  const base = runBaseFor(loaded.runBase, false);
  const run = base === undefined
    ? undefined
    : liveRuns(base).find((r) => r.state.name === req.name || r.state.id === req.name);
  if (run === undefined) {
    throw new ShoalError(`no running container named '${req.name}'`, {
      hint: "`shoal ps` lists yours",
    });
  }
  if (base!.notice !== undefined) logger.warn(base!.notice);
  const early = holdStopSignals();
  const fd = openAt(base!.fd, run.name, O.RDONLY | O.DIRECTORY);
  try {
    const bundle = { name: run.name, path: `${base!.path}/${run.name}`, fd };
    const spec = JSON.parse(Deno.readTextFileSync(bundleFile(bundle, BUNDLE.config))) as OciSpec;
    const own = spec.process;
    if (
      req.user !== undefined && userOptionIsRoot(req.user, currentCaller()) !== (own.user.uid === 0)
    ) {
      throw new UsageError(
        `-u ${req.user}: the container '${req.name}' runs as ${
          own.user.uid === 0 ? "root" : "you"
        }`,
        { hint: "exec runs a command as the container's own user: leave -u out" },
      );
    }
    const env = new Map(own.env.map((e) => [e.slice(0, e.indexOf("=")), e]));
    const host = Deno.env.toObject();
    for (const e of req.env) {
      const value = e.value ?? host[e.name];
      if (value === undefined) env.delete(e.name);
      else env.set(e.name, `${e.name}=${value}`);
    }
    const state = run.state;
    return await execProcess({
      runc: loaded.paths.runc!,
      target: execTarget(state, bundle),
      bundle,
      dev: base!.dev,
      process: {
        ...own,
        args: req.command,
        env: [...env.values()],
        cwd: req.workdir ?? own.cwd,
        terminal: req.tty,
      },
      stdin: req.stdin,
      preserveFds: 0,
      moves: [],
      stopTimeout: loaded.config.runtime.stopTimeoutSeconds,
      early,
    });
  } finally {
    early.release();
    closeFd(fd);
  }
}

/** How to exec into the container a run's state describes, whose bundle is `bundle`. */
export function execTarget(state: RunState, bundle: Bundle): ExecTarget {
  return {
    runPath: state.runPath,
    bundle: bundle.path,
    id: state.id,
    holder: state.holder,
    rootIsUser: state.rootIsUser,
  };
}

/** The capabilities config.json gives a process, as the mask shoal-enter keeps. */
function capabilityMask(process: OciProcess): string {
  let mask = 0n;
  for (const name of process.capabilities?.permitted ?? []) {
    const cap = (CAP_NAMES as readonly string[]).indexOf(name.toLowerCase());
    if (cap < 0) throw new ShoalError(`unknown capability ${name} in the container's config`);
    mask |= 1n << BigInt(cap);
  }
  return mask.toString(16);
}

/**
 * The process through shoal-enter: it becomes the process itself, a child
 * of this shoal with nothing between them, so a signal sent to the whole
 * step (Slurm's) reaches it once, and no Go runtime starts for it.
 */
async function enterProcess(r: ExecRequest, enter: { shim: string; pid: number }) {
  const p = r.process;
  const result = await supervise({
    argv: [
      enter.shim,
      String(enter.pid),
      (p.user.umask ?? 0o022).toString(8),
      capabilityMask(p),
      // runc sets a root process's groups to its additionalGids (none); another keeps the caller's.
      p.user.uid === 0 ? "clear" : "keep",
      "--",
      p.cwd,
      ...p.args,
    ],
    env: p.env ?? [],
    stdin: r.stdin,
    tty: false,
    holdPrefix: ENTER_FATAL_PREFIX,
    stopTimeout: r.stopTimeout,
    end: (child) => libc().kill(child, SIGKILL),
    moves: r.moves,
    early: r.early,
  });
  const fatal = result.held.join("").trim();
  if (fatal !== "") return { status: result.status, error: new ShoalError(fatal) };
  result.release();
  return { status: result.status };
}
