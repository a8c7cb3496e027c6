/**
 * Files reached through descriptors of directories already judged, never by
 * a name resolved again: in a directory another user may write (/tmp), a name
 * checked and then used can point elsewhere by the time it is used. Every
 * open here refuses to follow a symlink in the last component; statx gives
 * the same fixed layout on both 64-bit ABIs shoal supports.
 *
 * Deno's own file calls may be given `fdPath(fd, name)`: the kernel resolves
 * /proc/self/fd/N as the open directory itself, so nothing above it is looked
 * up by name again.
 */
import { check, cString, Errno, errno, ErrnoError, libc, O, ptr } from "./libc.ts";

/** open(2) flags, for the callers of openAt. */
export { O };

const AT_FDCWD = -100;
const AT_SYMLINK_NOFOLLOW = 0x100;
const AT_REMOVEDIR = 0x200;
const AT_EMPTY_PATH = 0x1000;
const STATX_BASIC_STATS = 0x7ff;
const STATX_MNT_ID = 0x1000;
const STATX_SIZE = 256;

const S_IFMT = 0o170000;
export const S_IFDIR = 0o040000;
export const S_IFREG = 0o100000;
export const S_IFLNK = 0o120000;

/** What statx(2) says of one file; `dev` is major:minor. */
export interface FdStat {
  /** File type bits (S_IFDIR, S_IFREG, S_IFLNK, ...). */
  type: number;
  /** Permission bits with setuid, setgid and sticky (mode & 07777). */
  perm: number;
  uid: number;
  gid: number;
  ino: bigint;
  dev: string;
  size: number;
  /** Modification time, milliseconds since the epoch. */
  mtimeMs: number;
  /** The mount it is on (Linux 5.8 and later): mounts of one filesystem differ in their flags. */
  mntId?: bigint;
}

function statxCall(dirfd: number, name: string, flags: number, subject: string): FdStat {
  const buf = new Uint8Array(STATX_SIZE);
  check(
    "statx",
    libc().statx(dirfd, ptr(cString(name)), flags, STATX_BASIC_STATS | STATX_MNT_ID, ptr(buf)),
    subject,
  );
  const v = new DataView(buf.buffer);
  const mode = v.getUint16(28, true);
  const mask = v.getUint32(0, true);
  return {
    ...((mask & STATX_MNT_ID) !== 0 && { mntId: v.getBigUint64(144, true) }),
    type: mode & S_IFMT,
    perm: mode & 0o7777,
    uid: v.getUint32(20, true),
    gid: v.getUint32(24, true),
    ino: v.getBigUint64(32, true),
    size: Number(v.getBigUint64(40, true)),
    mtimeMs: Number(v.getBigInt64(112, true)) * 1000 + v.getUint32(120, true) / 1e6,
    dev: `${v.getUint32(136, true)}:${v.getUint32(140, true)}`,
  };
}

/** fstat of an open descriptor. */
export function fstat(fd: number, subject = `fd ${fd}`): FdStat {
  return statxCall(fd, "", AT_EMPTY_PATH, subject);
}

/** lstat of `name` in directory `dirfd` (a symlink is described, not followed). */
export function lstatAt(dirfd: number, name: string): FdStat {
  return statxCall(dirfd, name, AT_SYMLINK_NOFOLLOW, name);
}

/** stat of an absolute path, following symlinks (for /proc's own links). */
export function statPath(path: string): FdStat {
  return statxCall(AT_FDCWD, path, 0, path);
}

/**
 * Opens `name` in `dirfd` (AT_FDCWD-style absolute paths are refused: pass "/"'s
 * descriptor) with O_NOFOLLOW and O_CLOEXEC added; throws ErrnoError, whose errno
 * is ELOOP for a symlink.
 */
export function openAt(dirfd: number, name: string, flags: number): number {
  return check(
    "open",
    libc().openat(dirfd, ptr(cString(name)), flags | O.NOFOLLOW | O.CLOEXEC, 0),
    name,
  );
}

/** Opens an absolute path's root, "/", as an O_PATH descriptor to walk from. */
export function openRoot(): number {
  return check("open", libc().openat(AT_FDCWD, ptr(cString("/")), O.PATH | O.DIRECTORY, 0), "/");
}

/** mkdir `name` in `dirfd`; false when it exists already. */
export function mkdirAt(dirfd: number, name: string, mode: number): boolean {
  if (libc().mkdirat(dirfd, ptr(cString(name)), mode) === 0) return true;
  const code = errno();
  if (code === Errno.EEXIST) return false;
  throw new ErrnoError("mkdir", code, name);
}

/** Removes `name` from `dirfd` (a directory with `dir`); a missing one is fine. */
export function unlinkAt(dirfd: number, name: string, dir: boolean): void {
  if (libc().unlinkat(dirfd, ptr(cString(name)), dir ? AT_REMOVEDIR : 0) === 0) return;
  const code = errno();
  if (code !== Errno.ENOENT) throw new ErrnoError(dir ? "rmdir" : "unlink", code, name);
}

/** Renames `from` to `to`, both in `dirfd`; false when `to` exists (RENAME_NOREPLACE). */
export function renameNoReplaceAt(dirfd: number, from: string, to: string): boolean {
  const RENAME_NOREPLACE = 1;
  if (
    libc().renameat2(dirfd, ptr(cString(from)), dirfd, ptr(cString(to)), RENAME_NOREPLACE) === 0
  ) {
    return true;
  }
  const code = errno();
  if (code === Errno.EEXIST) return false;
  throw new ErrnoError("rename", code, `${from} to ${to}`);
}

export function fchmod(fd: number, mode: number): void {
  check("fchmod", libc().fchmod(fd, mode));
}

export function closeFd(fd: number): void {
  libc().close(fd);
}

/** A path that reaches `name` in the open directory `fd` without resolving anything above it. */
export function fdPath(fd: number, name?: string): string {
  return name === undefined ? `/proc/self/fd/${fd}` : `/proc/self/fd/${fd}/${name}`;
}

/**
 * Removes `name` in `dirfd` and, for a directory, everything in it, through
 * descriptors: symlinks are removed, never followed, and nothing on another
 * filesystem than `dev` (a mount point) is entered or removed. Returns false
 * when something was left for that reason. `listed`: what the directory
 * listing said `name` is. No directory: it is unlinked without a look first
 * (a file's unlink never follows it, and fails on a mount point). A
 * directory: rmdir first, which takes only an empty one (most of a bundle's
 * are, their mounts gone with the run's namespace), one call instead of
 * four; a mount point here fails it with EBUSY, and is looked at below.
 */
export function removeTreeAt(
  dirfd: number,
  name: string,
  dev: string,
  listed?: "not a directory" | "a directory",
): boolean {
  if (listed === "not a directory") {
    try {
      unlinkAt(dirfd, name, false);
      return true;
    } catch (err) {
      if (!(err instanceof ErrnoError)) throw err;
      if (err.errno === Errno.EBUSY) return false;
      // A directory by now (replaced since the listing): looked at below.
      if (err.errno !== Errno.EISDIR) throw err;
    }
  } else if (listed === "a directory") {
    try {
      unlinkAt(dirfd, name, true);
      return true;
    } catch (err) {
      // Not empty, a mount point, or no directory by now: looked at below.
      if (!(err instanceof ErrnoError)) throw err;
    }
  }
  let info: FdStat;
  try {
    info = lstatAt(dirfd, name);
  } catch (err) {
    if (err instanceof ErrnoError && err.errno === Errno.ENOENT) return true;
    throw err;
  }
  if (info.dev !== dev) return false;
  if (info.type !== S_IFDIR) {
    unlinkAt(dirfd, name, false);
    return true;
  }
  let fd: number;
  try {
    fd = openAt(dirfd, name, O.RDONLY | O.DIRECTORY);
  } catch (err) {
    // Removed meanwhile by another remover (a run's end and a sweep of ended runs meet).
    if (err instanceof ErrnoError && err.errno === Errno.ENOENT) return true;
    throw err;
  }
  let complete: boolean;
  try {
    complete = emptyDirAt(fd, dev);
  } finally {
    closeFd(fd);
  }
  if (complete) unlinkAt(dirfd, name, true);
  return complete;
}

/**
 * Removes everything in the open directory `fd` as removeTreeAt does, the
 * directory itself staying; false when something was left.
 */
export function emptyDirAt(fd: number, dev: string): boolean {
  let complete = true;
  // The listing is of the open directory itself (fdPath), not of a name.
  for (const entry of Deno.readDirSync(fdPath(fd))) {
    const listed = entry.isDirectory ? "a directory" : "not a directory";
    complete = removeTreeAt(fd, entry.name, dev, listed) && complete;
  }
  return complete;
}
