/**
 * Path A: the setuid helper shoal-mount mounts the image (kernel squashfs,
 * idmapped, tmpfs overlay) at <bundle>/rootfs in a private mount namespace,
 * creates the container's user namespace at <bundle>/userns, drops every
 * privilege and runs runc as the user, staying as a watchdog that forwards
 * signals to runc, passes its exit status through and kills what is left of
 * the container when runc exits or shoal dies (helper/main.c's header).
 * shoal only builds the command line; the helper re-checks everything.
 */
import { join } from "../path.ts";
import { BUNDLE } from "./rundir.ts";

/** Where the helper binds the container's user namespace (config.json joins it). */
export const USERNS_FILE = "userns";

export interface HelperLaunch {
  helper: string;
  bundle: string;
  image: string;
  root: boolean;
  /** `--writable-tmpfs-size` in bytes. */
  tmpfsSize?: number;
  id: string;
  /** Options for `runc run` (e.g. --preserve-fds N). */
  runcOptions: string[];
}

export function helperArgv(l: HelperLaunch): string[] {
  return [
    l.helper,
    "run",
    "--image",
    l.image,
    "--bundle",
    l.bundle,
    ...(l.root ? ["--root"] : []),
    "--userns",
    ...(l.tmpfsSize === undefined ? [] : ["--tmpfs-size", `${Math.ceil(l.tmpfsSize / 1024)}k`]),
    "--",
    "--log",
    join(l.bundle, BUNDLE.runcLog),
    "--log-format",
    "json",
    "--root",
    join(l.bundle, BUNDLE.runcState),
    "run",
    ...l.runcOptions,
    "--bundle",
    l.bundle,
    l.id,
  ];
}
