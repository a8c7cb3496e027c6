/**
 * `shoal run`'s engine: finds the image, picks the path, writes the bundle,
 * launches and supervises the container, and removes every file of the run
 * when it ends. Returns the container's exit status; prints nothing (warnings
 * and debug lines go to the logger). The path's own steps are launch.ts's;
 * runs that share a container (a step's ranks, `--join`) go on in join.ts.
 */
import { join } from "../path.ts";
import { runInStep } from "./join.ts";
import type { LoadedConfig } from "../config/load.ts";
import { ShoalError, UsageError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { RunPath } from "../host/check.ts";
import type { ImageRecord } from "../image/store/store.ts";
import { readerFor } from "../image/store/reader.ts";
import { callerInfo, hostInfo } from "./caller.ts";
import { choosePath } from "./choose.ts";
import { USERNS_FILE } from "./launch_helper.ts";
import { type Launch, prepareLaunch } from "./launch.ts";
import { generateName } from "./names.ts";
import { defineLazy } from "../lazy.ts";
import { installedHooks } from "./hooks.ts";
import { RUNC_FATAL_PREFIX, runcFailure } from "./runc_error.ts";
import {
  BUNDLE,
  type Bundle,
  bundleFile,
  createBundle,
  endBundle,
  NAME_PATTERN,
  type RunBase,
  runBaseFor,
} from "./rundir.ts";
import {
  buildBundleSpec,
  type BundleSpec,
  containerArgs,
  type RunRequest,
  type UserInfo,
} from "./spec.ts";
import { liveRuns, processStartTime, type RunState, writeState } from "./state.ts";
import { type EarlyStop, holdStopSignals, supervise } from "./supervise.ts";
import { MAIN_PID_FILE } from "./main_exit.ts";
import { symlinkAtRaw } from "../sys/raw_path.ts";
import { type LauncherPassthrough, launcherPassthrough } from "./pmi.ts";
import { type StepKey, stepKey } from "./step_key.ts";
import type { ExecTarget } from "./launch.ts";
import type { MpiInjection } from "../mpi/inject.ts";

export interface RunOptions {
  /** The image reference or IMAGE ID as the user gave it. */
  image: string;
  centralized: boolean;
  request: RunRequest;
  /** `--preserve-fds N`: descriptors 3..3+N-1 reach the container. */
  preserveFds: number;
  /** `--join KEY`: share one container with the other runs given KEY (join.ts). */
  join?: string;
  logger: Logger;
}

export interface RunOutcome {
  /** The container's exit status (or shoal's for runc's own failure). */
  status: number;
  /** runc's failure in one line, when it did not start the command. */
  error?: ShoalError;
}

/** What a run has settled before it makes any file: for run.ts and join.ts alike. */
export interface RunContext {
  loaded: LoadedConfig;
  opts: RunOptions;
  user: UserInfo;
  image: ImageRecord;
  path: RunPath;
  launcher: LauncherPassthrough;
  base: RunBase;
  /** Stop signals held while the run makes its files (holdStopSignals). */
  early: EarlyStop;
  /** "at N ms" since shoal's start, for debug lines. */
  now(): string;
  /** The key of the step whose container this run shares (step_key.ts), if any. */
  step?: StepKey;
  /** `--mpi`: what the host's MPI adds to the container (mpi/inject.ts). */
  mpi?: { injection: MpiInjection; module: typeof import("../mpi/inject.ts") };
}

const NAME_TRIES = 20;
/** The image's ld.so.cache with the host MPI's libraries (`--mpi`), in the bundle. */
const MPI_LD_CACHE = "mpi-ld.so.cache";

export async function runContainer(loaded: LoadedConfig, opts: RunOptions): Promise<RunOutcome> {
  const { request, logger } = opts;
  // Debug times count from the start of shoal's runtime, so that they add up with the time
  // before it (bench/startup.ts reads them to say where a start's time goes).
  const now = () => `at ${performance.now().toFixed(1)} ms`;
  logger.debug(
    `shoal's runtime started at ${performance.timeOrigin.toFixed(1)} ms after the epoch`,
  );
  if (request.name !== undefined && !NAME_PATTERN.test(request.name)) {
    throw new UsageError(
      `--name ${request.name}: use letters, digits, '_', '.' and '-', starting with a letter or digit`,
    );
  }
  const store = readerFor(loaded, opts.centralized, logger);
  const image = await store.lookup(opts.image);
  if (image === undefined) throw store.notFound(opts.image);
  if (loaded.config.signatures.length > 0) {
    // Loaded only where a site has a signature policy: other runs read no key.
    const { admitStoredImage } = await import("../image/signature/verify.ts");
    await admitStoredImage(loaded, image);
  }
  const user = await callerInfo();
  // The container gets the caller's umask (spec.ts); the run's own files, and what runc and
  // the helper create, need one that lets their owner use them (under 0777 nothing could).
  Deno.umask(0o022);
  logger.debug(`image ${image.reference} found (${now()})`);
  // Sync file calls throughout: each async one costs ~0.5 ms in a fresh process.
  const choose = (): RunPath => {
    const imageFile = Deno.statSync(image.squashfsPath);
    const choice = choosePath(loaded, user, {
      // The helper judges the file by where it really is.
      path: Deno.realPathSync(image.squashfsPath),
      uid: imageFile.uid ?? -1,
      mode: imageFile.mode ?? 0,
    }, { root: request.root, tmpfsSize: request.writableTmpfsSize });
    logger.debug(`run path: ${choice.path}: ${choice.reason} (${now()})`);
    return choice.path;
  };
  const step = stepKey(user.env, opts.join);
  if (step !== undefined) logger.debug(`step key ${step.key} from ${step.source}`);
  // A run of its own has its path before it makes anything; a rank joining its step's
  // container takes the container's (join.ts), and only a leader needs one chosen.
  const path = step === undefined ? choose() : undefined;
  const launcher = launcherPassthrough(opts.preserveFds, user.env, request.mounts);
  for (const w of launcher.warnings) logger.warn(w);
  // Loaded only by runs with --mpi; its checks refuse before anything is created.
  const mpiModule = request.mpi && await import("../mpi/inject.ts");
  const mpi = mpiModule && {
    module: mpiModule,
    injection: await mpiModule.injectMpi(
      loaded.config,
      request.mpi!.type,
      image,
      containerArgs(request, image),
    ),
  };
  for (const w of mpi?.injection.warnings ?? []) logger.warn(w);
  for (const d of mpi?.injection.details ?? []) logger.debug(d);

  let claimed: Bundle | undefined;
  let launch: Launch | undefined;
  // From here on a stop signal leaves files to remove: it must not end shoal before that.
  const early = holdStopSignals();
  let base: RunBase | undefined;
  try {
    base = runBaseFor(loaded.runBase, true)!;
    if (base.notice !== undefined) logger.warn(base.notice);
    const ctx: RunContext = {
      loaded,
      opts,
      user,
      image,
      // A step's rank has none yet: it is chosen when first asked (below).
      path: path!,
      launcher,
      base,
      early,
      now,
      ...(mpi && { mpi }),
      ...(step && { step }),
    };
    if (step !== undefined) {
      defineLazy(ctx, "path", choose);
      return await runInStep(ctx, step);
    }
    claimed = claimName(base, request.name);
    const bundle = claimed;
    logger.debug(`bundle: ${bundle.path} (${now()})`);
    // Path B: the user namespace is made and the image mounted while the bundle is written.
    launch = startLaunch(ctx, bundle);
    const built = await specFor(ctx, bundle, request.init);
    writeBundle(ctx, bundle, built, built.spec);
    logger.debug(`config.json written (${now()})`);
    const target = await launch.ready();
    logger.debug(`ready to start the container (${now()})`);
    const runcOptions = [
      "--pid-file",
      join(bundle.path, MAIN_PID_FILE),
      ...(launcher.preserveFds > 0 ? ["--preserve-fds", String(launcher.preserveFds)] : []),
    ];
    const result = await supervise({
      argv: launch.runArgv(runcOptions),
      stdin: request.stdin || request.tty,
      tty: request.tty,
      holdPrefix: RUNC_FATAL_PREFIX,
      // Watched through its descriptor, as everything of the bundle shoal reads.
      bundle: bundleFile(bundle, "."),
      stopTimeout: loaded.config.runtime.stopTimeoutSeconds,
      end: launch.end,
      moves: launcher.moves,
      early,
    }, () => writeState(bundle, runState(ctx, bundle, target, built.command)));
    logger.debug(`container exited with status ${result.status} (${now()})`);
    // runc's own failure shows as a held line first; only then is its log worth reading.
    const failure = result.held.length > 0
      ? runcFailure(readLog(bundleFile(bundle, BUNDLE.runcLog)))
      : undefined;
    if (failure !== undefined) {
      logger.debug(`runc: ${result.held.join("").trim()}`);
      return { status: failure.status, error: failure.error };
    }
    result.release();
    return { status: result.status };
  } finally {
    early.release();
    await launch?.finish();
    if (claimed !== undefined) {
      endBundle(base!, claimed);
    }
  }
}

/** The run path's launch for `bundle`, whose name is runc's container id. */
export function startLaunch(ctx: RunContext, bundle: Bundle): Launch {
  const { request } = ctx.opts;
  return prepareLaunch(ctx.loaded, {
    path: ctx.path,
    user: ctx.user,
    root: request.root,
    tmpfsSize: request.writableTmpfsSize,
    bundle: bundle.path,
    id: bundle.name,
    image: ctx.image.squashfsPath,
  });
}

/**
 * The run's config.json and identity files for a container in the bundle dir
 * `dir`, on the run path `path` (a joining rank's is its container's); warns.
 */
export async function specFor(
  ctx: RunContext,
  bundle: Bundle,
  init: boolean,
  path: RunPath = ctx.path,
): Promise<BundleSpec> {
  const { loaded, opts: { request }, launcher } = ctx;
  const dir = bundle.path;
  const host = hostInfo(
    path === "helper" ? { kind: "join", path: join(dir, USERNS_FILE) } : { kind: "inherit" },
    dir,
    init ? loaded.paths.init : undefined,
    loaded.layout.execShim,
  );
  host.hooks = installedHooks(loaded);
  if (ctx.mpi !== undefined) writeMpiCache(bundle, ctx.mpi.injection.ldCache);
  const asked = ctx.mpi === undefined
    ? request
    : ctx.mpi.module.withInjection(request, ctx.mpi.injection, join(dir, MPI_LD_CACHE));
  // A job step's ranks (a key, or Slurm's step on its own here) get a /dev/shm of their own.
  const privateShm = ctx.step !== undefined || ctx.user.env.SLURM_STEP_ID !== undefined;
  const built = await buildBundleSpec(
    { ...asked, init, privateShm, mounts: [...asked.mounts, ...launcher.mounts] },
    ctx.image,
    loaded.config,
    { ...ctx.user, env: launcher.env },
    host,
  );
  for (const w of built.warnings) ctx.opts.logger.warn(w);
  return built;
}

/**
 * The linker cache `--mpi` binds over the image's, written once into the
 * bundle: a joined rank finds it there, bound into the running container,
 * and must not rewrite what the others' loaders may be reading.
 */
function writeMpiCache(bundle: Bundle, cache: Uint8Array): void {
  try {
    Deno.writeFileSync(bundleFile(bundle, MPI_LD_CACHE), cache, { mode: 0o644, createNew: true });
  } catch (err) {
    if (!(err instanceof Deno.errors.AlreadyExists)) throw err;
  }
}

/** Writes config.json (`spec`: the run's, or a step container's) and the identity files. */
export function writeBundle(ctx: RunContext, bundle: Bundle, built: BundleSpec, spec = built.spec) {
  Deno.writeTextFileSync(bundleFile(bundle, BUNDLE.config), JSON.stringify(spec));
  for (const link of built.links) symlinkAtRaw(link.target, bundle.fd, link.name);
  // Mounted over the image's with the default identity only (spec.ts).
  if (!ctx.opts.request.root) {
    Deno.writeTextFileSync(bundleFile(bundle, BUNDLE.passwd), built.passwd, { mode: 0o644 });
    Deno.writeTextFileSync(bundleFile(bundle, BUNDLE.group), built.group, { mode: 0o644 });
  }
}

/** The state `shoal ps`, `kill` and `exec` read, for the run supervised by this shoal. */
export function runState(
  ctx: RunContext,
  bundle: Bundle,
  target: ExecTarget,
  command: string[],
): RunState {
  return {
    name: bundle.name,
    image: ctx.image.reference,
    pid: Deno.pid,
    startTime: processStartTime(Deno.pid) ?? 0,
    id: bundle.name,
    created: new Date().toISOString(),
    status: "running",
    runPath: ctx.path,
    command,
    ...(target.holder === undefined ? {} : { holder: target.holder }),
    ...(target.rootIsUser === undefined ? {} : { rootIsUser: target.rootIsUser }),
  };
}

export function readLog(path: string): string {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return ""; // runc wrote no log
  }
}

/** Claims the run's name by creating its bundle dir; `--name` must be free among live runs. */
export function claimName(base: RunBase, wanted: string | undefined): Bundle {
  // Listing also removes the bundle dirs of runs whose shoal is gone, freeing their names.
  const live = liveRuns(base);
  if (wanted !== undefined) {
    const bundle = createBundle(base, wanted);
    if (bundle !== false) return bundle;
    const running = live.some((r) => r.state.name === wanted);
    throw new UsageError(
      `--name ${wanted}: ${running ? "a container of that name is running" : "the name is in use"}`,
      { hint: "`shoal ps` lists the running ones; choose another name" },
    );
  }
  for (let i = 0; i < NAME_TRIES; i++) {
    const name = i < NAME_TRIES / 2 ? generateName() : `shoal-${crypto.randomUUID().slice(0, 12)}`;
    const bundle = createBundle(base, name);
    if (bundle !== false) return bundle;
  }
  throw new ShoalError(`no free container name in ${base.path}`, { hint: "give one with --name" });
}
