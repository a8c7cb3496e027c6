/**
 * One container per job step per node (step_key.ts says which runs share
 * one): the first rank to come creates it and every rank, its own included,
 * joins it with `runc exec` (launch_exec.ts), as Pyxis does. Ranks then
 * share the user, mount (and pid, when private) namespaces, so that MPI's
 * CMA and /proc/PID/fd work between them.
 *
 * Files, in `<run base>/.join/` (0700, the caller's; its name is not a run's,
 * so nothing sweeps it), per key (a digest of it, H):
 *
 *   H.lock     the election: held exclusively while a rank looks at H.json
 *              and, when it leads, while it creates the container
 *   H.members  every rank in the container holds a shared flock on it for
 *              its life (the leader too): flocks vanish with their process,
 *              even at SIGKILL
 *   H.json     the container: its bundle's name and what it is (its
 *              config.json but the process's argv, env, cwd and terminal,
 *              and the image file), for joiners to compare with their own
 *
 * The leader makes a run's bundle as `shoal run` does, with the init
 * (catatonit -P: `--init`'s program, pausing and reaping) as the container's
 * process, starts it through the path's launch (launch.ts), writes H.json,
 * lets go of the election and execs its own rank. Joiners check that the
 * leader's shoal is live (its pid and start time) and that they ask for the
 * same container, then exec. The leader's shoal stays until its own rank has
 * ended and it gets H.members exclusively (no member left; after a stop
 * signal, stopTimeoutSeconds at most), removes the three files under the
 * election lock, and ends the container through its path; its rank's status
 * is its own. A rank that cannot get H.members shared finds the container
 * ending and waits for the next one. If the leader's shoal is killed, the
 * path's watchdog (helper) or guard (path B) ends the container and every
 * exec'd rank with it: runc exec then reports that, and nobody hangs.
 */
import { join } from "../path.ts";
import { toHex } from "../bytes.ts";
import { ShoalError } from "../errors.ts";
import { closeFd, fdPath, fstat, lstatAt, mkdirAt, O, openAt } from "../sys/dirfd.ts";
import { endsWithin, spawn, statusWithin } from "../sys/spawn.ts";
import { libc } from "../sys/libc.ts";
import type { ExecTarget, Launch } from "./launch.ts";
import { execProcess, execTarget } from "./launch_exec.ts";
import { MAIN_PID_FILE, readPid } from "./main_exit.ts";
import { exists } from "../sys/fs.ts";
import type { OciProcess, OciSpec } from "./oci.ts";
import {
  claimName,
  readLog,
  type RunContext,
  type RunOutcome,
  runState,
  specFor,
  startLaunch,
  writeBundle,
} from "./run.ts";
import { runcFailure } from "./runc_error.ts";
import {
  BUNDLE,
  type Bundle,
  bundleFile,
  componentWhy,
  endBundle,
  NAME_PATTERN,
  type RunBase,
} from "./rundir.ts";
import { INIT_PATH } from "./spec.ts";
import { processRuns, readState, runsSince, type RunState, writeState } from "./state.ts";
import type { StepKey } from "./step_key.ts";
import { sleep, stoppableSleep } from "../sys/sleep.ts";
import { type EarlyStop, holdStopSignals } from "./supervise.ts";

/** The directory of the join files in the run base. */
export const JOIN_DIR = ".join";
/** How often a rank looks again at a lock another holds. */
const POLL_MS = 10;
/** How long the step's container may take to end before its runc is killed. */
const END_MS = 5000;
const SIGKILL = 9;

/** What H.json says of a step's container. */
interface StepRecord {
  /** Its bundle's name in the run base (runc's id). */
  name: string;
  /** What it is (see the header): what a joiner must ask for too. */
  container: Record<string, unknown>;
}

/** Runs `ctx`'s command as a rank of the step `step`: leads or joins its container. */
export async function runInStep(ctx: RunContext, step: StepKey): Promise<RunOutcome> {
  const dir = openJoinDir(ctx.base);
  const h = await keyDigest(step.key);
  const deadline = Date.now() + ctx.loaded.config.locks.timeoutSeconds * 1000;
  try {
    for (;;) {
      const election = await lockAt(dir, `${h}.lock`, deadline, step);
      const member = tryLockAt(dir, `${h}.members`, false);
      if (member === undefined) {
        // Its leader is ending it: the next rank to come starts a new one.
        release(election);
        await sleep(POLL_MS);
        continue;
      }
      // Both locks are theirs to release from here.
      const live = liveRecord(ctx.base, dir, h);
      if (live === undefined) return await lead(ctx, dir, h, election, member, step);
      try {
        return await joinStep(ctx, live, election, member, step);
      } finally {
        // A leader still running ends the step itself (lastOut): only a killed one leaves
        // that to the last rank out, and has ended (a zombie at least) by the time its
        // container, this rank with it, is ended for it. One read of /proc says which.
        if (!runsSince(live.state.pid, live.state.startTime)) {
          await removeOrphaned(ctx.base, dir, h);
        }
      }
    }
  } finally {
    closeFd(dir);
  }
}

/** Creates the step's container, execs this rank into it, and ends it when the last rank has. */
async function lead(
  ctx: RunContext,
  dir: number,
  h: string,
  election: Deno.FsFile,
  member: Deno.FsFile,
  step: StepKey,
): Promise<RunOutcome> {
  const { request } = ctx.opts;
  const logger = ctx.opts.logger;
  // The leader chooses the run path (run.ts), which may refuse, before it makes anything.
  void ctx.path;
  // Until its files are removed: a stop signal (scancel's TERM comes to every process of
  // the step, more than once) must not end this shoal before that.
  const stop = holdStopSignals();
  const bundle = claimName(ctx.base, request.name);
  let launch: Launch | undefined;
  let container: ReturnType<typeof spawn> | undefined;
  try {
    logger.debug(`leading ${step.key} in ${bundle.path} (${ctx.now()})`);
    launch = startLaunch(ctx, bundle);
    const built = await specFor(ctx, bundle, true);
    const spec = built.spec;
    writeBundle(ctx, bundle, built, {
      ...spec,
      process: { ...spec.process, args: [INIT_PATH, "-P"], terminal: false },
    });
    const target = await launch.ready();
    container = spawn(launch.runArgv(["--pid-file", join(bundle.path, MAIN_PID_FILE)]), {
      stdin: "null",
      stdout: "null",
      stderr: "pipe",
      newSession: true,
    });
    await started(bundle, container);
    logger.debug(`the step's container runs (${ctx.now()})`);
    await writeState(bundle, runState(ctx, bundle, target, built.command));
    const record: StepRecord = { name: bundle.name, container: whatItIs(ctx, spec) };
    Deno.writeTextFileSync(fdPath(dir, `${h}.json`), JSON.stringify(record), { mode: 0o600 });
    release(election);
    const outcome = await execRank(ctx, target, bundle, spec.process);
    release(member);
    logger.debug(`own rank ended with ${outcome.status}; waiting for the others (${ctx.now()})`);
    await lastOut(ctx, dir, h, step, stop);
    return outcome;
  } finally {
    release(election);
    release(member);
    // Ended and finished at once (path B's guard then sweeps once after the other):
    // Slurm's KillWait after scancel may be short.
    if (container !== undefined) launch!.end(container.pid);
    await launch?.finish();
    if (container !== undefined && await statusWithin(container, END_MS) === undefined) {
      libc().kill(container.pid, SIGKILL);
      await container.status;
    }
    endBundle(ctx.base, bundle);
    stop.release();
  }
}

/** Execs this rank into the live container of `record`, if it asks for the same one. */
async function joinStep(
  ctx: RunContext,
  { record, state }: LiveRecord,
  election: Deno.FsFile,
  member: Deno.FsFile,
  step: StepKey,
): Promise<RunOutcome> {
  const { base } = ctx;
  const fd = openAt(base.fd, record.name, O.RDONLY | O.DIRECTORY);
  const bundle: Bundle = { name: record.name, path: `${base.path}/${record.name}`, fd };
  try {
    // Its membership keeps the container: the others need not wait while it builds its spec.
    release(election);
    // Built for that bundle, as the leader built it for its own.
    const spec = (await specFor(ctx, bundle, true, state.runPath)).spec;
    const differs = firstDifference(record.container, whatItIs(ctx, spec));
    if (differs !== undefined) {
      throw new ShoalError(
        `${describeKey(step)}: this rank asks for a container whose ${differs} differ from ` +
          `those of the step's container ${record.name}, which another rank started`,
        {
          hint: "give every rank of the step the same image and options" +
            (step.source === "join" ? ", or another --join KEY" : ""),
        },
      );
    }
    ctx.opts.logger.debug(`joining ${record.name} (${ctx.now()})`);
    return await execRank(ctx, execTarget(state, bundle), bundle, spec.process);
  } finally {
    release(election);
    release(member);
    closeFd(fd);
  }
}

/**
 * Waits until no rank is left in the container (or, after a stop signal, for
 * stopTimeoutSeconds), then removes the step's files under the election lock:
 * from then on a rank that comes starts a new container.
 */
async function lastOut(
  ctx: RunContext,
  dir: number,
  h: string,
  step: StepKey,
  stop: EarlyStop,
): Promise<void> {
  const grace = ctx.loaded.config.runtime.stopTimeoutSeconds * 1000;
  let stoppedAt: number | undefined;
  const members = tryLockAt(dir, `${h}.members`, true);
  const file = members ?? Deno.openSync(fdPath(dir, `${h}.members`), { read: true });
  try {
    while (members === undefined && !file.tryLockSync(true)) {
      if (stop.signal !== undefined) stoppedAt ??= Date.now();
      if (stoppedAt !== undefined && Date.now() - stoppedAt > grace) break;
      await sleep(POLL_MS * 5);
    }
    const election = await lockAt(dir, `${h}.lock`, Date.now() + grace + END_MS, step);
    try {
      removeStepFiles(dir, h);
    } finally {
      release(election);
    }
  } finally {
    release(file);
  }
}

/**
 * The step's files, when its leader is gone (killed: its container went
 * with it) and no rank is left: the last rank out removes them. A killed
 * leader's watchdog ends the container, and so this rank, while the leader's
 * process may still be ending, holding its flocks and its bundle: then this
 * rank waits for it (END_MS at most) and looks again.
 */
async function removeOrphaned(base: RunBase, dir: number, h: string): Promise<void> {
  if (removeIfOrphaned(base, dir, h)) return;
  const live = liveRecord(base, dir, h);
  // A leader whose container still runs ends the step itself (lastOut).
  if (live === undefined || containerRuns(base, live.record.name)) return;
  // Ended, or nothing to wait on (gone already): look again.
  if (await endsWithin(live.state.pid, END_MS) !== false) removeIfOrphaned(base, dir, h);
}

/** Removes the step's files when no rank and no live leader is left; true when it did. */
function removeIfOrphaned(base: RunBase, dir: number, h: string): boolean {
  const election = tryLockAt(dir, `${h}.lock`, true);
  const members = election && tryLockAt(dir, `${h}.members`, true);
  try {
    if (members === undefined || liveRecord(base, dir, h) !== undefined) return false;
    removeStepFiles(dir, h);
    return true;
  } finally {
    if (members !== undefined) release(members);
    if (election !== undefined) release(election);
  }
}

/** Whether the container of the step's bundle `name` still runs (its process 1, runc's pid file). */
function containerRuns(base: RunBase, name: string): boolean {
  const pid = readPid(fdPath(base.fd, `${name}/${MAIN_PID_FILE}`));
  return pid !== undefined && processRuns(pid);
}

function removeStepFiles(dir: number, h: string): void {
  for (const name of [`${h}.json`, `${h}.members`, `${h}.lock`]) {
    try {
      Deno.removeSync(fdPath(dir, name));
    } catch { /* gone already */ }
  }
}

/** The rank's own process: its argv (without the init, unless it asked for --init), env, cwd. */
function rankProcess(ctx: RunContext, process: OciProcess): OciProcess {
  const init = ctx.opts.request.init;
  return { ...process, args: init ? process.args : process.args.slice(2) };
}

/** What a rank asks of the step's container: its config but the process's own, and the image. */
function whatItIs(ctx: RunContext, spec: OciSpec): Record<string, unknown> {
  const { args: _args, env: _env, cwd: _cwd, terminal: _terminal, ...process } = spec.process;
  return JSON.parse(JSON.stringify({ ...spec, image: ctx.image.squashfsPath, process }));
}

/** The first part of `a` and `b` that differs ("mounts", "process's capabilities"), or undefined. */
function firstDifference(
  a: Record<string, unknown>,
  b: Record<string, unknown>,
): string | undefined {
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
  for (const key of keys) {
    const x = a[key], y = b[key];
    if (JSON.stringify(x) === JSON.stringify(y)) continue;
    const object = (v: unknown) => typeof v === "object" && v !== null && !Array.isArray(v);
    if (object(x) && object(y)) {
      const inner = firstDifference(x as Record<string, unknown>, y as Record<string, unknown>);
      return `${key}'s ${inner}`;
    }
    return key;
  }
  return undefined;
}

function describeKey(step: StepKey): string {
  return step.source === "join"
    ? `--join ${step.key.slice("join:".length)}`
    : `ranks of ${step.source} step ${step.key.slice(step.source.length + 1)}`;
}

/** A step's container and its leader's run state. */
interface LiveRecord {
  record: StepRecord;
  state: RunState;
}

/** The step's live container, from H.json: its leader's shoal must be running it. */
function liveRecord(base: RunBase, dir: number, h: string): LiveRecord | undefined {
  let record: StepRecord;
  try {
    record = JSON.parse(Deno.readTextFileSync(fdPath(dir, `${h}.json`)));
  } catch {
    return undefined; // none yet, or its leader died while writing it
  }
  if (typeof record?.name !== "string" || !NAME_PATTERN.test(record.name)) return undefined;
  if (typeof record.container !== "object" || record.container === null) return undefined;
  const state = readState(base, record.name);
  // The files are the caller's alone (0700), the leader's own: what is left to tell is
  // whether that shoal still runs, which its pid and start time say in one read of /proc.
  // (isRunProcess also looks through its descriptors, ~1 ms a rank: for a pid a command
  // signals, where the state file is all there is to go by.)
  return state !== undefined && runsSince(state.pid, state.startTime)
    ? { record, state }
    : undefined;
}

/** Waits until runc has started the container's process (its pid file), or says why not. */
async function started(bundle: Bundle, child: ReturnType<typeof spawn>): Promise<void> {
  const said = collect(child.stderr!);
  while (readPid(bundleFile(bundle, MAIN_PID_FILE)) === undefined) {
    if (await statusWithin(child, POLL_MS) === undefined) continue;
    const failure = runcFailure(readLog(bundleFile(bundle, BUNDLE.runcLog)));
    throw failure?.error ??
      new ShoalError(`the step's container did not start: ${(await said).trim() || "runc ended"}`);
  }
}

async function collect(stream: AsyncIterable<Uint8Array>): Promise<string> {
  let text = "";
  const decoder = new TextDecoder();
  for await (const chunk of stream) text += decoder.decode(chunk, { stream: true });
  return text.split("\n").filter((l) => l.trim() !== "").at(-1) ?? "";
}

/** `.join` in the run base, made private to the caller and judged as the base is. */
function openJoinDir(base: RunBase): number {
  mkdirAt(base.fd, JOIN_DIR, 0o700);
  const fd = openAt(base.fd, JOIN_DIR, O.RDONLY | O.DIRECTORY);
  const why = componentWhy("base", fstat(fd, JOIN_DIR), base.uid);
  if (why !== undefined) {
    closeFd(fd);
    throw new ShoalError(`${base.path}/${JOIN_DIR} ${why}`, {
      hint: "remove it: shoal makes it again",
    });
  }
  return fd;
}

/** Opens `name` in the join dir (the caller's, 0700: only they can put anything there). */
function openIn(dir: number, name: string): Deno.FsFile {
  return Deno.openSync(fdPath(dir, name), { read: true, write: true, create: true, mode: 0o600 });
}

/** Whether `file` is still `name` in `dir`: the last rank out removes the files it locked. */
function stillThere(dir: number, name: string, file: Deno.FsFile): boolean {
  try {
    return lstatAt(dir, name).ino === BigInt(file.statSync().ino ?? -1);
  } catch {
    return false;
  }
}

/** Takes `name`'s flock now (exclusive or shared); undefined when another holds it. */
function tryLockAt(dir: number, name: string, exclusive: boolean): Deno.FsFile | undefined {
  const file = openIn(dir, name);
  if (file.tryLockSync(exclusive) && stillThere(dir, name, file)) return file;
  file.close();
  return undefined;
}

/**
 * Takes `name`'s exclusive flock, waiting for it until `deadline`: blocked in
 * flock(2) on a thread of Deno's pool, so that the kernel hands it on at once
 * (64 ranks polling would cost more than they wait). A wait that times out
 * ends shoal, and the blocked call with it.
 */
async function lockAt(
  dir: number,
  name: string,
  deadline: number,
  step: StepKey,
): Promise<Deno.FsFile> {
  for (;;) {
    const file = openIn(dir, name);
    const timeout = stoppableSleep(deadline - Date.now());
    const locked = await Promise.race([
      file.lock(true).then(() => true),
      timeout.slept.then(() => false),
    ]);
    timeout.stop();
    if (!locked) {
      throw new ShoalError(
        `${describeKey(step)}: timed out waiting for the step's container (${name} is locked)`,
        { hint: "another rank of the step is stuck starting it: end the step and run it again" },
      );
    }
    if (stillThere(dir, name, file)) return file;
    release(file);
  }
}

/** Keys up to this many bytes name their files themselves, hex-encoded. */
const NAMED_KEY_BYTES = 64;

/**
 * The step files' name for `key` (H in the header): the key's bytes in hex
 * when it is short, as the keys Slurm, hydra and PMIx give are, which costs a
 * rank nothing; a digest of a longer one (WebCrypto, whose first use costs
 * ~0.3 ms). The prefixes keep the two kinds of name apart.
 */
export async function keyDigest(key: string): Promise<string> {
  const bytes = new TextEncoder().encode(key);
  if (bytes.length <= NAMED_KEY_BYTES) return `k${toHex(bytes)}`;
  const digest = await crypto.subtle.digest("SHA-256", bytes);
  return `d${toHex(new Uint8Array(digest).subarray(0, 16))}`;
}

/** Closes `file` (its flock goes with it); closing twice is fine. */
function release(file: Deno.FsFile): void {
  try {
    file.close();
  } catch { /* closed already */ }
}

/**
 * This rank's process, exec'd into the step's container and supervised until
 * it ends: entered directly (shoal-enter) where runc exec would add nothing
 * shoal-enter does not do, otherwise through runc exec.
 */
function execRank(
  ctx: RunContext,
  target: ExecTarget,
  bundle: Bundle,
  process: OciProcess,
): Promise<RunOutcome> {
  const { loaded, opts: { request } } = ctx;
  const shim = loaded.layout.enterShim;
  const pid = readPid(bundleFile(bundle, MAIN_PID_FILE));
  const direct = !request.tty && request.pid !== "private" &&
    loaded.config.seccompProfile === undefined && pid !== undefined && exists(shim);
  return execProcess({
    ...(direct && { enter: { shim, pid: pid! } }),
    runc: ctx.loaded.paths.runc!,
    target,
    bundle,
    dev: ctx.base.dev,
    process: rankProcess(ctx, process),
    stdin: ctx.opts.request.stdin,
    preserveFds: ctx.launcher.preserveFds,
    moves: ctx.launcher.moves,
    stopTimeout: ctx.loaded.config.runtime.stopTimeoutSeconds,
    early: ctx.early,
  });
}
