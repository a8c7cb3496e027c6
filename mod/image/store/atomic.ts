/**
 * Crash-safe file writes: a temp file next to the target, fsync, rename,
 * fsync of the directory. A process killed at any moment leaves either the
 * old file or the new one, plus at worst a temp file that the next writer
 * removes (see `isAtomicTemp`).
 */
import { basename, dirname, join } from "../../path.ts";
import { randomHex } from "../../bytes.ts";

const TEMP_MARK = ".tmp-";

/** Temp files of `writeFileAtomic`: hidden, and marked so a later writer can tell them apart. */
export function isAtomicTemp(name: string): boolean {
  return name.startsWith(".") && name.includes(TEMP_MARK);
}

/** A fresh temp name in the directory of `path`, for a file that will be renamed onto it. */
export function atomicTempPath(path: string): string {
  const tag = `${Deno.pid}-${randomHex(6)}`;
  return join(dirname(path), `.${basename(path)}${TEMP_MARK}${tag}`);
}

/** Writes `data` to a new file `path` with `mode` (whatever the umask) and flushes it to disk. */
export async function writeDurable(path: string, data: Uint8Array, mode: number): Promise<void> {
  const file = await Deno.open(path, { write: true, createNew: true, mode });
  try {
    await Deno.chmod(path, mode); // the umask may have taken bits away
    for (let off = 0; off < data.length;) off += await file.write(data.subarray(off));
    await file.syncData();
  } finally {
    file.close();
  }
}

/** Replaces `path` with `data` atomically; on failure nothing but the old file remains. */
export async function writeFileAtomic(path: string, data: Uint8Array, mode: number): Promise<void> {
  const temp = atomicTempPath(path);
  try {
    await writeDurable(temp, data, mode);
    await Deno.rename(temp, path);
  } catch (err) {
    await removeQuietly(temp);
    throw err;
  }
  await syncDir(dirname(path));
}

/** Makes renames and unlinks in `dir` durable. */
export async function syncDir(dir: string): Promise<void> {
  const handle = await Deno.open(dir, { read: true });
  try {
    await handle.sync();
  } finally {
    handle.close();
  }
}

/** Removes a file or tree; one that is already gone is fine. */
export async function removeQuietly(path: string, recursive = false): Promise<void> {
  try {
    await Deno.remove(path, { recursive });
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
}
