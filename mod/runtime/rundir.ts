/**
 * The per-user run directory and the bundle directory of each run in it.
 *
 * Layout: `<runDir>/<name>/` is one run's OCI bundle (config.json, passwd,
 * group, rootfs/, .mnt/, state.json). Naming the bundle after the run makes
 * `--name` unique by mkdir(2) alone, and lets `shoal ps`/`kill` find a run
 * without an index. The setuid helper accepts a bundle only when the run dir
 * and the bundle are owned by the caller and not writable by others, the
 * bundle is mode 0700 and a direct child, and no symlink is on the path, so
 * this module creates exactly that and refuses a run dir someone else made.
 *
 * Sync file calls: a run's start does dozens on small files, and each async
 * one costs ~0.5 ms in a fresh process (bench/startup.ts).
 */
import { join } from "../path.ts";
import { ShoalError } from "../errors.ts";

/** Bundle entries the runtime writes or mounts on. */
export const BUNDLE = {
  config: "config.json",
  passwd: "passwd",
  group: "group",
  rootfs: "rootfs",
  /** Where the image, the writable layer and (path B) runc's state are mounted. */
  mountArea: ".mnt",
  state: "state.json",
  /** runc's own state directory on path A (runc runs as the user there). */
  runcState: "runc",
  /** runc's log (JSON): its own errors, told apart from the container's output. */
  runcLog: "runc.log",
} as const;

/** Names a user may give a run (Docker's rule); also valid as runc container ids. */
export const NAME_PATTERN = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/;

/**
 * Creates the user's run dir if missing (mode 0700) and returns its canonical
 * path; refuses one that belongs to someone else or that others may write to
 * (in /tmp anyone could have made it first). Async for callers that hold it as a promise.
 */
// deno-lint-ignore require-await
export async function ensureRunBase(base: string, uid: number): Promise<string> {
  try {
    Deno.mkdirSync(base, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new ShoalError(`cannot create the run directory ${base}: ${(err as Error).message}`, {
      hint: "set runDir in the site config to a directory you can create",
      cause: err,
    });
  }
  const real = Deno.realPathSync(base);
  const info = Deno.lstatSync(real);
  if (!info.isDirectory || info.uid !== uid || ((info.mode ?? 0) & 0o022) !== 0) {
    throw new ShoalError(
      `the run directory ${real} is not yours alone (owner uid ${info.uid}, mode ${
        ((info.mode ?? 0) & 0o7777).toString(8)
      })`,
      { hint: `remove it (someone else may have created it) or set runDir in the site config` },
    );
  }
  return real;
}

/**
 * Creates the bundle dir `<base>/<name>` with its mount points; false when a
 * run of that name already has one.
 */
export function createBundleDir(base: string, name: string): string | false {
  const dir = join(base, name);
  try {
    Deno.mkdirSync(dir, { mode: 0o700 });
  } catch (err) {
    if (err instanceof Deno.errors.AlreadyExists) return false;
    throw err;
  }
  // mkdir's mode is cut by the umask; the helper wants exactly 0700.
  Deno.chmodSync(dir, 0o700);
  Deno.mkdirSync(join(dir, BUNDLE.rootfs), { mode: 0o700 });
  Deno.mkdirSync(join(dir, BUNDLE.mountArea), { mode: 0o700 });
  return dir;
}

/** Removes a bundle dir and everything in it; a missing one is fine. */
export function removeBundleDir(dir: string): void {
  try {
    Deno.removeSync(dir, { recursive: true });
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
}

/** The names of the bundle dirs in the run dir (those that look like runs). */
export function bundleNames(base: string): string[] {
  const names: string[] = [];
  try {
    for (const e of Deno.readDirSync(base)) {
      if (e.isDirectory && NAME_PATTERN.test(e.name)) names.push(e.name);
    }
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return [];
    throw err;
  }
  return names.sort();
}
