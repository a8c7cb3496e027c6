/**
 * The launch of a container, one implementation per run path, so that
 * run.ts and join.ts keep the flow and never branch on the path:
 *
 *   prepareLaunch  start what the path needs before runc (path B: the guard
 *                  makes U and mounts the image while the bundle is written)
 *   ready          wait for it; says how to exec into the container (ExecTarget)
 *   runArgv        `runc run` as the path runs it (under the helper's watchdog,
 *                  or nsenter'd into U)
 *   end            kill the container's processes; runc run then exits
 *   finish         the run is over (path B: the guard cleans up and ends)
 *
 *   execArgv       `runc exec` into a started container of either path, from
 *                  any shoal process of the user (a rank joining a step's
 *                  container, `shoal exec`): on path A runc runs as the user
 *                  with the bundle's runc state; on path B it enters the
 *                  guard's holder as the chain does, where that state is.
 */
import { join } from "../path.ts";
import type { LoadedConfig } from "../config/load.ts";
import type { RunPath } from "../host/check.ts";
import { libc } from "../sys/libc.ts";
import { idMap } from "./idmap.ts";
import { chainArgv, enterArgv, fuseStateDir, rootIsUser } from "./launch_fuse.ts";
import { helperArgv } from "./launch_helper.ts";
import { type Guard, startGuard } from "./guard.ts";
import { BUNDLE } from "./rundir.ts";
import type { UserInfo } from "./spec.ts";

/** The helper's request to end the container: SIGRTMIN+2, glibc's SIGRTMIN being 34. */
const HELPER_END_SIGNAL = 36;

/** What another shoal process needs to exec into a started container (kept in its state). */
export interface ExecTarget {
  runPath: RunPath;
  /** The bundle dir (absolute). */
  bundle: string;
  /** runc's container id. */
  id: string;
  /** Path B: the guard's holder, whose user and mount namespaces runc runs in. */
  holder?: number;
  /** Path B: whether root of U is the user already (launch_fuse.ts rootIsUser). */
  rootIsUser?: boolean;
}

export interface Launch {
  ready(): Promise<ExecTarget>;
  /** After ready(): `runc run` with `runcOptions` (e.g. --pid-file, --preserve-fds). */
  runArgv(runcOptions: string[]): string[];
  /** Kills the container's processes; `child` is the process runArgv started. */
  end(child: number): void;
  finish(): Promise<void>;
}

export interface LaunchRequest {
  path: RunPath;
  user: UserInfo;
  root: boolean;
  tmpfsSize?: number;
  /** The bundle dir (absolute) and runc's container id. */
  bundle: string;
  id: string;
  /** The image's squashfs file. */
  image: string;
}

export function prepareLaunch(loaded: LoadedConfig, r: LaunchRequest): Launch {
  return r.path === "helper" ? helperLaunch(loaded, r) : fuseLaunch(loaded, r);
}

function helperLaunch(loaded: LoadedConfig, r: LaunchRequest): Launch {
  return {
    ready: () => Promise.resolve({ runPath: "helper", bundle: r.bundle, id: r.id }),
    runArgv: (runcOptions) =>
      helperArgv({
        helper: loaded.paths.helper,
        bundle: r.bundle,
        image: r.image,
        root: r.root,
        tmpfsSize: r.tmpfsSize,
        id: r.id,
        runcOptions,
      }),
    end: (helper) => libc().kill(helper, HELPER_END_SIGNAL),
    finish: () => Promise.resolve(),
  };
}

function fuseLaunch(loaded: LoadedConfig, r: LaunchRequest): Launch {
  const ids = {
    uidMappings: idMap(r.user.uid, r.user.subuid, r.root).mappings,
    gidMappings: idMap(r.user.gid, r.user.subgid, r.root).mappings,
    newuidmap: loaded.paths.newuidmap,
    newgidmap: loaded.paths.newgidmap,
    setgroups: r.root ? "allow" as const : "deny" as const,
  };
  const asRoot = rootIsUser(ids, r.user.uid, r.user.gid);
  const started: Promise<Guard> = startGuard(loaded.layout.guardScript, ids, {
    bundle: r.bundle,
    image: r.image,
    tmpfsSize: r.tmpfsSize,
    squashfuse: loaded.paths.squashfuse!,
    rootIsUser: asRoot,
  });
  // Its failure surfaces at ready(); it is finished in any case.
  started.catch(() => {});
  let guard: Guard | undefined;
  return {
    ready: async () => {
      guard = await started;
      return {
        runPath: "unprivileged",
        bundle: r.bundle,
        id: r.id,
        holder: guard.holder,
        rootIsUser: asRoot,
      };
    },
    runArgv: (runcOptions) =>
      chainArgv({
        bundle: r.bundle,
        runc: loaded.paths.runc!,
        id: r.id,
        runcOptions,
        rootIsUser: asRoot,
      }, guard!.holder),
    end: () => guard?.end(),
    finish: async () => await (await started.catch(() => undefined))?.finish(),
  };
}

/** `runc exec` into the started container `t` with `options` (--process FILE, ...), logging to `log`. */
export function execArgv(runc: string, t: ExecTarget, options: string[], log: string): string[] {
  const exec = (state: string) => [
    runc,
    "--log",
    log,
    "--log-format",
    "json",
    "--root",
    state,
    "exec",
    ...options,
    t.id,
  ];
  return t.runPath === "helper"
    ? exec(join(t.bundle, BUNDLE.runcState))
    : [...enterArgv(t.holder!, t.rootIsUser ?? false), ...exec(fuseStateDir(t.bundle))];
}
