/** Filesystem facts the Deno API does not give: the filesystem type and mount flags (statfs). */
import { check, cString, libc, ptr } from "./libc.ts";

/** f_type values of statfs(2) that shoal tells apart. */
export const FsMagic = {
  PROC: 0x9fa0,
  TMPFS: 0x01021994,
  CGROUP: 0x0027e0eb,
  CGROUP2: 0x63677270,
} as const;

/** f_flags bits of statfs(2). */
export const MountFlag = { NOSUID: 2 } as const;

export interface FsStat {
  /** The filesystem's magic number (see FsMagic). */
  type: number;
  /** Mount flags (see MountFlag). */
  flags: number;
}

// struct statfs on 64-bit Linux is 120 bytes: f_type at 0, f_flags at 80 (both 8 bytes).
const STATFS_SIZE = 120;

export function statfs(path: string): FsStat {
  const buf = new Uint8Array(STATFS_SIZE);
  check("statfs", libc().statfs(ptr(cString(path)), ptr(buf)), path);
  const view = new DataView(buf.buffer);
  return {
    type: Number(view.getBigUint64(0, true)),
    flags: Number(view.getBigUint64(80, true)),
  };
}

/**
 * Whether something is at `path` (symlinks followed): false only when
 * nothing is; any other failure (a directory that may not be searched) is
 * thrown, since it says nothing about what is there.
 */
export function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}
