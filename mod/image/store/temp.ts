/**
 * Work directories of pulls in progress, inside the repository so that the
 * finished squashfs reaches its place by a rename on the same filesystem.
 * Each `tmp/<name>/` has a lock file `tmp/<name>.lock`, created and locked
 * before the directory exists and held while the pull runs. A later writer
 * removes a directory whose lock is free (its pull died). A directory made
 * on this host goes at once: it exists only once its lock was taken, and this
 * host sees its own locks. One made on another host must also have been left
 * unchanged for a while, since some cluster filesystems (Lustre with
 * localflock) do not show one node's locks to the others.
 */
import { join } from "../../path.ts";
import { randomHex } from "../../bytes.ts";
import { removeQuietly } from "./atomic.ts";
import { tryAcquireLock } from "./lock.ts";
import type { Modes } from "./paths.ts";

export const STALE_AFTER_MS = 10 * 60 * 1000;
const LOCK_SUFFIX = ".lock";

export interface TempDir extends AsyncDisposable {
  readonly path: string;
  /** Removes the directory and whatever is left in it; safe to call twice. */
  remove(): Promise<void>;
}

export async function createTempDir(tmpRoot: string, modes: Modes): Promise<TempDir> {
  const name = `${Date.now().toString(36)}-${Deno.pid}-${randomHex(4)}`;
  const path = join(tmpRoot, name);
  const lockPath = path + LOCK_SUFFIX;
  const lock = await Deno.open(lockPath, { write: true, createNew: true, mode: modes.file });
  try {
    await lock.lock(true); // a fresh file nobody else has reason to lock: no wait
    await lock.write(new TextEncoder().encode(`${Deno.hostname()}\n`));
    await Deno.mkdir(path, { mode: modes.dir });
    await Deno.chmod(path, modes.dir);
  } catch (err) {
    lock.close();
    await removeQuietly(lockPath);
    throw err;
  }
  let removed = false;
  const remove = async () => {
    if (removed) return;
    removed = true;
    await removeQuietly(path, true);
    await removeQuietly(lockPath);
    lock.close();
  };
  return { path, remove, [Symbol.asyncDispose]: remove };
}

/** Newest mtime of a path and its direct children: a pull writing there keeps it fresh. */
async function lastChange(path: string): Promise<number> {
  const info = await Deno.lstat(path);
  let newest = info.mtime?.getTime() ?? 0;
  if (!info.isDirectory) return newest;
  for await (const e of Deno.readDir(path)) {
    const t = (await Deno.lstat(join(path, e.name)).catch(() => undefined))?.mtime?.getTime();
    if (t !== undefined && t > newest) newest = t;
  }
  return newest;
}

/** Unchanged for STALE_AFTER_MS; a path that is gone has nothing left to protect. */
async function isStale(path: string, now: number): Promise<boolean> {
  try {
    return now - await lastChange(path) >= STALE_AFTER_MS;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return true;
    throw err;
  }
}

async function madeHere(lockPath: string): Promise<boolean> {
  const text = await Deno.readTextFile(lockPath).catch(() => "");
  return text.trim() === Deno.hostname();
}

async function exists(path: string): Promise<boolean> {
  return await Deno.lstat(path).then(() => true, () => false);
}

/** Removes the work of dead pulls; returns the names removed. */
export async function removeStaleTempDirs(tmpRoot: string, now = Date.now()): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(tmpRoot)) names.push(e.name);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return [];
    throw err;
  }
  const removed: string[] = [];
  for (const name of names) {
    if (!name.endsWith(LOCK_SUFFIX)) {
      // A directory is handled with its lock file; one without is a leftover.
      const dir = join(tmpRoot, name);
      if (names.includes(name + LOCK_SUFFIX) || !(await isStale(dir, now))) continue;
      await removeQuietly(dir, true);
      removed.push(name);
      continue;
    }
    const lockPath = join(tmpRoot, name);
    const dir = lockPath.slice(0, -LOCK_SUFFIX.length);
    const local = await madeHere(lockPath) && await exists(dir);
    if (!local && (!(await isStale(lockPath, now)) || !(await isStale(dir, now)))) continue;
    const lock = await tryAcquireLock(lockPath, "exclusive").catch(() => undefined);
    if (lock === undefined) continue; // its pull is alive (or the file just went away)
    try {
      await removeQuietly(dir, true);
      await removeQuietly(lockPath);
      removed.push(name);
    } finally {
      lock.release();
    }
  }
  return removed;
}
