/**
 * `shoal run`'s engine: finds the image, picks the path, writes the bundle,
 * launches and supervises the container, and removes every file of the run
 * when it ends. Returns the container's exit status; prints nothing (warnings
 * and debug lines go to the logger).
 */
import { join } from "../path.ts";
import type { LoadedConfig } from "../config/load.ts";
import { ShoalError, UsageError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { readerFor } from "../image/store/reader.ts";
import { callerInfo, hostInfo } from "./caller.ts";
import { choosePath } from "./choose.ts";
import { idMap } from "./idmap.ts";
import { chainArgv, rootIsUser } from "./launch_fuse.ts";
import { helperArgv, USERNS_FILE } from "./launch_helper.ts";
import { generateName } from "./names.ts";
import { installedHooks } from "./hooks.ts";
import { RUNC_FATAL_PREFIX, runcFailure } from "./runc_error.ts";
import {
  BUNDLE,
  type Bundle,
  bundleFile,
  closeBundle,
  createBundle,
  NAME_PATTERN,
  removeBundle,
  type RunBase,
  runBaseFor,
} from "./rundir.ts";
import { buildBundleSpec, containerArgs, type RunRequest } from "./spec.ts";
import { liveRuns, processStartTime, writeState } from "./state.ts";
import { holdStopSignals, supervise } from "./supervise.ts";
import { type Guard, startGuard } from "./guard.ts";
import { MAIN_PID_FILE } from "./main_exit.ts";
import { libc } from "../sys/libc.ts";
import { symlinkAtRaw } from "../sys/raw_path.ts";
import { launcherPassthrough } from "./pmi.ts";

export interface RunOptions {
  /** The image reference or IMAGE ID as the user gave it. */
  image: string;
  centralized: boolean;
  request: RunRequest;
  /** `--preserve-fds N`: descriptors 3..3+N-1 reach the container. */
  preserveFds: number;
  logger: Logger;
}

export interface RunOutcome {
  /** The container's exit status (or shoal's for runc's own failure). */
  status: number;
  /** runc's failure in one line, when it did not start the command. */
  error?: ShoalError;
}

const NAME_TRIES = 20;
/** The image's ld.so.cache with the host MPI's libraries (`--mpi`), in the bundle. */
const MPI_LD_CACHE = "mpi-ld.so.cache";
/** The helper's request to end the container: SIGRTMIN+2, glibc's SIGRTMIN being 34. */
const HELPER_END_SIGNAL = 36;

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
  const imageFile = Deno.statSync(image.squashfsPath);
  const choice = choosePath(loaded, user, {
    // The helper judges the file by where it really is.
    path: Deno.realPathSync(image.squashfsPath),
    uid: imageFile.uid ?? -1,
    mode: imageFile.mode ?? 0,
  }, { root: request.root, tmpfsSize: request.writableTmpfsSize });
  logger.debug(`run path: ${choice.path}: ${choice.reason} (${now()})`);
  const launcher = launcherPassthrough(opts.preserveFds, user.env, request.mounts);
  for (const w of launcher.warnings) logger.warn(w);
  // Loaded only by runs with --mpi; its checks refuse before anything is created.
  const mpiModule = request.mpi && await import("../mpi/inject.ts");
  const mpi = mpiModule &&
    await mpiModule.injectMpi(
      loaded.config,
      request.mpi!.type,
      image,
      containerArgs(request, image),
    );
  for (const w of mpi?.warnings ?? []) logger.warn(w);
  for (const d of mpi?.details ?? []) logger.debug(d);

  let base: RunBase | undefined;
  let claimed: Bundle | undefined;
  let guardStart: Promise<Guard> | undefined;
  // From here on a stop signal leaves files to remove: it must not end shoal before that.
  const early = holdStopSignals();
  try {
    base = runBaseFor(loaded.runBase, true)!;
    if (base.notice !== undefined) logger.warn(base.notice);
    claimed = claimName(base, request.name);
    const { name, path: dir } = claimed;
    const bundle = claimed;
    logger.debug(`bundle: ${dir} (${now()})`);
    // Path B: the user namespace is made and the image mounted while the bundle is written.
    const fuseIds = choice.path === "helper" ? undefined : {
      uidMappings: idMap(user.uid, user.subuid, request.root).mappings,
      gidMappings: idMap(user.gid, user.subgid, request.root).mappings,
      newuidmap: loaded.paths.newuidmap,
      newgidmap: loaded.paths.newgidmap,
      setgroups: request.root ? "allow" as const : "deny" as const,
    };
    const asRoot = fuseIds !== undefined && rootIsUser(fuseIds, user.uid, user.gid);
    guardStart = fuseIds && startGuard(loaded.layout.guardScript, fuseIds, {
      bundle: dir,
      image: image.squashfsPath,
      tmpfsSize: request.writableTmpfsSize,
      squashfuse: loaded.paths.squashfuse!,
      rootIsUser: asRoot,
    });
    // Its failure surfaces where the run awaits it; it is finished below in any case.
    guardStart?.catch(() => {});
    const host = hostInfo(
      choice.path === "helper"
        ? { kind: "join", path: join(dir, USERNS_FILE) }
        : { kind: "inherit" },
      dir,
      request.init ? loaded.paths.init : undefined,
      loaded.layout.execShim,
    );
    host.hooks = installedHooks(loaded);
    let withMpi = request;
    if (mpi !== undefined) {
      Deno.writeFileSync(bundleFile(bundle, MPI_LD_CACHE), mpi.ldCache, { mode: 0o644 });
      withMpi = mpiModule!.withInjection(request, mpi, join(dir, MPI_LD_CACHE));
    }
    const built = await buildBundleSpec(
      { ...withMpi, mounts: [...withMpi.mounts, ...launcher.mounts] },
      image,
      loaded.config,
      { ...user, env: launcher.env },
      host,
    );
    for (const w of built.warnings) logger.warn(w);
    Deno.writeTextFileSync(bundleFile(bundle, BUNDLE.config), JSON.stringify(built.spec));
    for (const link of built.links) symlinkAtRaw(link.target, bundle.fd, link.name);
    // Mounted over the image's with the default identity only (spec.ts).
    if (!request.root) {
      Deno.writeTextFileSync(bundleFile(bundle, BUNDLE.passwd), built.passwd, { mode: 0o644 });
      Deno.writeTextFileSync(bundleFile(bundle, BUNDLE.group), built.group, { mode: 0o644 });
    }
    logger.debug(`config.json written (${now()})`);
    const runcOptions = [
      "--pid-file",
      join(dir, MAIN_PID_FILE),
      ...(launcher.preserveFds > 0 ? ["--preserve-fds", String(launcher.preserveFds)] : []),
    ];
    const state = {
      name,
      image: image.reference,
      pid: Deno.pid,
      startTime: processStartTime(Deno.pid) ?? 0,
      id: name,
      created: new Date().toISOString(),
      status: "running" as const,
      runPath: choice.path,
      command: built.command,
    };
    const superviseRun = (argv: string[], end: (child: number) => void) =>
      supervise({
        argv,
        stdin: request.stdin || request.tty,
        tty: request.tty,
        holdPrefix: RUNC_FATAL_PREFIX,
        // Watched through its descriptor, as everything of the bundle shoal reads.
        bundle: bundleFile(bundle, "."),
        stopTimeout: loaded.config.runtime.stopTimeoutSeconds,
        end,
        moves: launcher.moves,
        early,
      }, () => writeState(bundle, state));

    let result;
    if (choice.path === "helper") {
      result = await superviseRun(
        helperArgv({
          helper: loaded.paths.helper,
          bundle: dir,
          image: image.squashfsPath,
          root: request.root,
          tmpfsSize: request.writableTmpfsSize,
          id: name,
          runcOptions,
        }),
        (helper) => libc().kill(helper, HELPER_END_SIGNAL),
      );
    } else {
      const guard = await guardStart!;
      logger.debug(`user namespace ready, image mounted (${now()})`);
      try {
        result = await superviseRun(
          chainArgv({
            bundle: dir,
            runc: loaded.paths.runc!,
            id: name,
            runcOptions,
            rootIsUser: asRoot,
          }, guard.holder),
          () => guard.end(),
        );
        logger.debug(`runc exited; the guard cleans up (${now()})`);
      } finally {
        await guard.finish();
      }
    }
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
    await (await guardStart?.catch(() => undefined))?.finish();
    if (claimed !== undefined) {
      closeBundle(claimed);
      removeBundle(base!, claimed.name);
    }
  }
}

function readLog(path: string): string {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return ""; // runc wrote no log
  }
}

/** Claims the run's name by creating its bundle dir; `--name` must be free among live runs. */
function claimName(base: RunBase, wanted: string | undefined): Bundle {
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
