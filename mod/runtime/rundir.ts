/**
 * The per-user run directory (the run base) and the bundle directory of each
 * run in it.
 *
 * Layout: `<base>/<name>/` is one run's OCI bundle (config.json, passwd,
 * group, rootfs/, .mnt/, state.json). Naming the bundle after the run makes
 * `--name` unique by mkdir(2) alone, and lets `shoal ps`/`kill` find a run
 * without an index.
 *
 * The run base rule, which the setuid helper applies to a bundle's parent in
 * the same words (helper/, "Run dir"): the path is absolute, walked from "/"
 * one component at a time without following any symlink; every directory
 * above the base is owned by root or the caller and, where group or others
 * may write it, sticky and root's (as /tmp); the base itself is a directory
 * of the caller's with mode 0700. Nobody else can then rename, replace or
 * write anything on the path, so the descriptor of the base, held for the
 * life of the process, is the base, and everything below is reached through
 * it (sys/dirfd.ts). Which base: the site's `runDir` when set (no fallback:
 * the admin chose it); else `$XDG_RUNTIME_DIR/shoal` or `/run/user/UID/shoal`
 * where that runtime dir is the caller's, mode 0700; else `/tmp/shoal-UID`;
 * and when another user took that name first (a symlink, or a directory of
 * theirs), a private `/tmp/shoal-UID.XXXXXXXX` that nobody can predict, found
 * again by its owner and mode.
 *
 * Sync file calls: a run's start does dozens on small files, and each async
 * one costs ~0.5 ms in a fresh process (bench/startup.ts).
 */
import { ShoalError } from "../errors.ts";
import { Errno, ErrnoError } from "../sys/libc.ts";
import {
  closeFd,
  emptyDirAt,
  fchmod,
  fdPath,
  type FdStat,
  fstat,
  lstatAt,
  mkdirAt,
  O,
  openAt,
  openRoot,
  renameNoReplaceAt,
  S_IFDIR,
  S_IFLNK,
  unlinkAt,
} from "../sys/dirfd.ts";

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

/** A verified run base, open for the life of the process. */
export interface RunBase {
  /** The path, as runc and the helper are given it: no symlink on it. */
  path: string;
  /** O_RDONLY descriptor of the directory: everything below goes through it. */
  fd: number;
  /** Its filesystem: the sweep never crosses onto another. */
  dev: string;
  uid: number;
  /** Set when the predictable name was taken by someone else (one line). */
  notice?: string;
}

/** One run's bundle dir, held open by the run that made it. */
export interface Bundle {
  name: string;
  /** The path runc and the helper get. */
  path: string;
  fd: number;
}

/** Where the run base is looked for: the site's runDir, or the defaults from the environment. */
export interface RunBaseWhere {
  uid: number;
  /** The site config's runDir, expanded. */
  runDir?: string;
  xdgRuntimeDir?: string;
  /** Where `/run/user` is (tests). */
  runUser?: string;
  /** Where `/tmp` is (tests). */
  tmp?: string;
}

/** A refusal of the rule, as one line; `missing`: only because a directory does not exist. */
class Refused extends Error {
  constructor(message: string, readonly missing = false) {
    super(message);
  }
}

const PERM_PRIVATE = 0o700;
const STICKY = 0o1000;

/** The components of an absolute path, refusing '.' and '..' (the walk must not climb). */
function components(path: string): string[] {
  if (!path.startsWith("/")) throw new Refused(`${path} is not an absolute path`);
  const parts = path.split("/").filter((p) => p !== "");
  if (parts.some((p) => p === "." || p === "..")) {
    throw new Refused(`${path} must be written without '.' or '..'`);
  }
  return parts;
}

/** `path` written as the walk reads it: one '/' between components, none at the end. */
export function canonicalPath(path: string): string {
  return "/" + components(path).join("/");
}

function describe(info: PathFacts): string {
  return `owner uid ${info.uid}, mode ${info.perm.toString(8).padStart(4, "0")}`;
}

/** What a directory on a run base's path is to the rule. */
export type PathRole = "above" | "base";

/** What the rule looks at of one path component (lstat's facts). */
export interface PathFacts {
  /** File type bits (S_IFDIR, S_IFLNK, ...). */
  type: number;
  /** mode & 07777. */
  perm: number;
  uid: number;
}

/**
 * Why a component with these facts cannot stand in `role` on the path of a
 * run base of `uid` (see the header; the helper's dir_why, helper/paths.c,
 * is the same rule and a test runs both on one table), or undefined. A
 * bundle dir is judged as a base: the caller's, 0700.
 */
export function componentWhy(role: PathRole, info: PathFacts, uid: number): string | undefined {
  if (info.type === S_IFLNK) return "is a symlink";
  if (info.type !== S_IFDIR) return "is not a directory";
  if (role === "base") {
    if (info.uid !== uid) return `is not yours (${describe(info)})`;
    if (info.perm !== PERM_PRIVATE) return `is not private (${describe(info)})`;
    return undefined;
  }
  if (info.uid !== 0 && info.uid !== uid) return `belongs to another user (${describe(info)})`;
  if ((info.perm & 0o022) !== 0 && (info.uid !== 0 || (info.perm & STICKY) === 0)) {
    return `may be written by others (${describe(info)})`;
  }
  return undefined;
}

/**
 * Walks `path` by the rule (see the header) and returns the base's descriptor.
 * `create`: missing directories are made (mode 0700, the caller's); a base of
 * the caller's with a wider mode is narrowed to 0700. `lastRole: "above"` walks to
 * a directory above a base instead (O_PATH). Throws Refused.
 */
function walk(
  path: string,
  uid: number,
  create: boolean,
  lastRole: PathRole = "base",
): { fd: number; info: FdStat } {
  const parts = components(path);
  if (parts.length === 0) throw new Refused(`the run directory cannot be /`);
  let fd = openRoot();
  let sofar = "";
  try {
    const rootWhy = componentWhy("above", fstat(fd, "/"), uid);
    if (rootWhy !== undefined) throw new Refused(`/ ${rootWhy}`);
    for (const [i, part] of parts.entries()) {
      const last = i === parts.length - 1;
      sofar += `/${part}`;
      const flags = last && lastRole === "base" ? O.RDONLY | O.DIRECTORY : O.PATH;
      let next: number;
      try {
        next = openAt(fd, part, flags);
      } catch (err) {
        if (!(err instanceof ErrnoError)) throw err;
        if (err.errno === Errno.ENOENT && create) {
          mkdirAt(fd, part, PERM_PRIVATE);
          next = openAt(fd, part, flags);
        } else if (err.errno === Errno.ELOOP || err.errno === Errno.ENOTDIR) {
          // O_DIRECTORY fails a symlink with ENOTDIR before O_NOFOLLOW's ELOOP.
          throw new Refused(`${sofar} is ${isSymlink(fd, part) ? "a symlink" : "not a directory"}`);
        } else if (err.errno === Errno.ENOENT) {
          throw new Refused(`${sofar} does not exist`, true);
        } else {
          throw new Refused(`${sofar}: ${err.message}`);
        }
      }
      closeFd(fd);
      fd = next;
      // O_PATH with O_NOFOLLOW opens a symlink itself rather than failing: the facts tell.
      let info = fstat(fd, sofar);
      const role = last ? lastRole : "above";
      if (
        role === "base" && create && info.type === S_IFDIR && info.uid === uid &&
        info.perm !== PERM_PRIVATE
      ) {
        fchmod(fd, PERM_PRIVATE);
        info = fstat(fd, sofar);
      }
      const why = componentWhy(role, info, uid);
      if (why !== undefined) throw new Refused(`${sofar} ${why}`);
      if (last) return { fd, info };
    }
    throw new Refused(`the run directory cannot be /`);
  } catch (err) {
    closeFd(fd);
    throw err;
  }
}

function isSymlink(dirfd: number, name: string): boolean {
  try {
    return lstatAt(dirfd, name).type === S_IFLNK;
  } catch {
    return false;
  }
}

function opened(path: string, uid: number, create: boolean, notice?: string): RunBase {
  const { fd, info } = walk(path, uid, create);
  return { path: canonicalPath(path), fd, dev: info.dev, uid, ...(notice ? { notice } : {}) };
}

/**
 * Whether `path` is a usable run base for `uid` by the rule, without creating
 * or changing anything: undefined when it is, else why not (one line).
 */
export function judgeRunBase(path: string, uid: number): string | undefined {
  try {
    closeFd(walk(path, uid, false).fd);
    return undefined;
  } catch (err) {
    if (err instanceof Refused) return err.message;
    throw err;
  }
}

/** A per-user runtime dir (XDG_RUNTIME_DIR, /run/user/UID): the caller's, 0700, reached by the rule. */
function privateRuntimeDir(dir: string | undefined, uid: number): boolean {
  return dir !== undefined && dir.startsWith("/") && judgeRunBase(dir, uid) === undefined;
}

const FALLBACK_LENGTH = 8;
/** 36^8 names: a clash at all means someone is guessing. */
const FALLBACK_TRIES = 16;

/**
 * The run base for `where` (see the header). `create: false` (ps, kill) makes
 * nothing: undefined when there is no base yet, so there are no runs.
 */
export function openRunBase(where: RunBaseWhere, create: boolean): RunBase | undefined {
  try {
    return chooseRunBase(where, create);
  } catch (err) {
    if (!(err instanceof Refused)) throw err;
    if (err.missing && !create) return undefined;
    throw new ShoalError(`the run directory cannot be used: ${err.message}`, {
      hint: "it must be a directory of yours, mode 0700, with no symlink on its path and " +
        "no directory above it that others may write" +
        (where.runDir === undefined ? "" : "; ask your admin (runDir in the site config)"),
    });
  }
}

function chooseRunBase(where: RunBaseWhere, create: boolean): RunBase | undefined {
  const { uid } = where;
  // The admin chose it: no fallback.
  if (where.runDir !== undefined) return opened(where.runDir, uid, create);
  const runUser = `${where.runUser ?? "/run/user"}/${uid}`;
  for (const dir of [where.xdgRuntimeDir, runUser]) {
    if (privateRuntimeDir(dir, uid)) return opened(`${dir}/shoal`, uid, create);
  }
  const tmp = where.tmp ?? "/tmp";
  const predictable = `${tmp}/shoal-${uid}`;
  let refused: Refused;
  try {
    return opened(predictable, uid, create);
  } catch (err) {
    if (!(err instanceof Refused)) throw err;
    refused = err;
  }
  const notice = refused.missing ? undefined : `${refused.message}: shoal uses a private ` +
    `directory of yours instead (ask your admin to remove ${predictable}: another user may ` +
    "have made it)";
  const fallback = findFallback(tmp, uid);
  if (fallback !== undefined) return opened(fallback, uid, false, notice);
  if (!create) return undefined;
  const tmpFd = walk(tmp, uid, false, "above").fd;
  try {
    for (let i = 0; i < FALLBACK_TRIES; i++) {
      const name = `shoal-${uid}.${randomSuffix()}`;
      if (mkdirAt(tmpFd, name, PERM_PRIVATE)) return opened(`${tmp}/${name}`, uid, true, notice);
    }
    throw new Refused(`no free name for a private run directory in ${tmp}`);
  } finally {
    closeFd(tmpFd);
  }
}

/** The first `shoal-UID.XXXXXXXX` in `tmp` that passes the rule. */
function findFallback(tmp: string, uid: number): string | undefined {
  const pattern = new RegExp(`^shoal-${uid}\\.[a-z0-9]{${FALLBACK_LENGTH}}$`);
  const names: string[] = [];
  try {
    for (const e of Deno.readDirSync(tmp)) if (pattern.test(e.name)) names.push(e.name);
  } catch {
    return undefined;
  }
  return names.sort().map((n) => `${tmp}/${n}`).find((p) => judgeRunBase(p, uid) === undefined);
}

function randomSuffix(): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  const bytes = crypto.getRandomValues(new Uint8Array(FALLBACK_LENGTH));
  return Array.from(bytes, (b) => alphabet[b % alphabet.length]).join("");
}

/**
 * Creates the bundle dir `<base>/<name>` (0700) with its mount points, open;
 * false when a run of that name already has one. It is made under a name of
 * its own and then renamed: under a run's name a bundle is never empty, so the
 * rmdir that ends another run of that name (removeBundle) cannot take it.
 */
export function createBundle(base: RunBase, name: string): Bundle | false {
  const made = `shoal-new-${randomSuffix()}`;
  if (!mkdirAt(base.fd, made, PERM_PRIVATE)) {
    throw new ShoalError(`${base.path}/${made} exists`, { hint: "run again" });
  }
  const fd = openAt(base.fd, made, O.RDONLY | O.DIRECTORY);
  try {
    // mkdir's mode is cut by the umask; the helper wants exactly 0700.
    fchmod(fd, PERM_PRIVATE);
    mkdirAt(fd, BUNDLE.rootfs, PERM_PRIVATE);
    mkdirAt(fd, BUNDLE.mountArea, PERM_PRIVATE);
    if (renameNoReplaceAt(base.fd, made, name)) return { name, path: `${base.path}/${name}`, fd };
  } catch (err) {
    removeBundle(base, made, fd);
    if (err instanceof ErrnoError && err.errno === Errno.EINVAL) {
      throw new ShoalError(
        `the run directory ${base.path} is on a filesystem that cannot rename without replacing ` +
          "(renameat2 RENAME_NOREPLACE), which the run directory's names rely on",
        { hint: "set runDir in the site config to a node-local filesystem (tmpfs, ext4, xfs)" },
      );
    }
    throw err;
  }
  removeBundle(base, made, fd);
  return false;
}

/** A path to `entry` of an open bundle, for Deno's file calls. */
export function bundleFile(bundle: Bundle, entry: string): string {
  return fdPath(bundle.fd, entry);
}

/**
 * Removes bundle `name` of the base, open at `fd` (its run's own, or the one
 * a sweep judged ended), and closes it. Its content goes through the
 * descriptor: only that very directory is emptied, never another run's that
 * took the name meanwhile (names are reused: names.ts). Then the name, which
 * rmdir takes only while it is empty, so it stays when it is another run's by
 * then. Nothing outside the base or on another filesystem is touched; a
 * bundle another shoal removes at the same time is fine.
 */
export function removeBundle(base: RunBase, name: string, fd: number): void {
  try {
    if (emptyDirAt(fd, base.dev)) unlinkAt(base.fd, name, true);
  } catch (err) {
    if (!(err instanceof ErrnoError && err.errno === Errno.ENOTEMPTY)) throw err;
  } finally {
    closeFd(fd);
  }
}

/**
 * The entries of the base that are plainly the caller's bundles: a directory
 * named like a run, the caller's, mode 0700, on the base's filesystem, with
 * the mount points a bundle is made with. Anything else is never touched.
 */
export function bundleNames(base: RunBase): string[] {
  const names: string[] = [];
  for (const e of Deno.readDirSync(fdPath(base.fd))) {
    if (NAME_PATTERN.test(e.name) && isBundle(base, e.name)) names.push(e.name);
  }
  return names.sort();
}

function isBundle(base: RunBase, name: string): boolean {
  const own = (info: FdStat) =>
    info.type === S_IFDIR && info.uid === base.uid && info.dev === base.dev;
  try {
    const info = lstatAt(base.fd, name);
    if (!own(info) || info.perm !== PERM_PRIVATE) return false;
    const fd = openAt(base.fd, name, O.PATH | O.DIRECTORY);
    try {
      return own(lstatAt(fd, BUNDLE.rootfs)) && own(lstatAt(fd, BUNDLE.mountArea));
    } finally {
      closeFd(fd);
    }
  } catch (err) {
    if (err instanceof ErrnoError) return false; // gone meanwhile, or not a directory
    throw err;
  }
}

/** Removes a run's own bundle at its end (removeBundle). */
export function endBundle(base: RunBase, bundle: Bundle): void {
  removeBundle(base, bundle.name, bundle.fd);
}

/** Run bases opened by this process, by where they were looked for. */
const openedBases = new Map<string, RunBase>();

/**
 * openRunBase, once per process: the config cache and the run look for the
 * same base, and the descriptor stays open for as long as shoal runs.
 */
export function runBaseFor(where: RunBaseWhere, create: boolean): RunBase | undefined {
  const key = JSON.stringify([
    where.uid,
    where.runDir,
    where.xdgRuntimeDir,
    where.runUser,
    where.tmp,
  ]);
  const known = openedBases.get(key);
  if (known !== undefined) return known;
  const base = openRunBase(where, create);
  if (base !== undefined) openedBases.set(key, base);
  return base;
}
