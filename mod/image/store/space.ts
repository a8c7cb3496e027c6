/** Disk space of a repository: what it holds, and removing cached blobs no image needs. */
import { join } from "../../path.ts";
import { removeQuietly } from "./atomic.ts";
import { tryAcquireLock } from "./lock.ts";
import { STALE_AFTER_MS } from "./temp.ts";
import { PARTIAL_SUFFIX } from "./paths.ts";

export interface DiskUsage {
  /** Bytes of squashfs images and their metadata. */
  images: number;
  /** Bytes of cached layer blobs, partial downloads included. */
  blobs: number;
  /** Bytes of pulls in progress or left by dead ones. */
  temporary: number;
}

/** Deep enough for every part of the layout; a deeper tree is not the store's. */
const MAX_DEPTH = 4;

/** Apparent size of the files under `path` (0 when it does not exist). */
export async function treeSize(path: string, depth = 0): Promise<number> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.lstat(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return 0;
    throw err;
  }
  if (!info.isDirectory) return info.size;
  if (depth >= MAX_DEPTH) return 0;
  let total = 0;
  for await (const e of Deno.readDir(path)) total += await treeSize(join(path, e.name), depth + 1);
  return total;
}

export interface BlobSweep {
  removed: number;
  bytesFreed: number;
}

/**
 * Removes blobs (`<dir>/<algorithm>/<hex>`) whose digest is not in `keep`,
 * and partial downloads whose pull died long ago. The caller makes sure no
 * pull is running: a pull may need a blob that no stored image lists yet.
 */
export async function sweepBlobs(
  blobsDir: string,
  keep: Set<string>,
  now = Date.now(),
): Promise<BlobSweep> {
  const sweep: BlobSweep = { removed: 0, bytesFreed: 0 };
  for (const algorithm of await names(blobsDir)) {
    const dir = join(blobsDir, algorithm);
    for (const name of await names(dir)) {
      const path = join(dir, name);
      const info = await Deno.lstat(path).catch(() => undefined);
      if (info === undefined || !info.isFile) continue;
      if (name.endsWith(PARTIAL_SUFFIX)) {
        if (now - (info.mtime?.getTime() ?? now) < STALE_AFTER_MS) continue;
        const lock = await tryAcquireLock(path, "exclusive").catch(() => undefined);
        if (lock === undefined) continue; // still being written
        try {
          await removeQuietly(path);
        } finally {
          lock.release();
        }
      } else if (!keep.has(`${algorithm}:${name}`)) {
        await removeQuietly(path);
      } else {
        continue;
      }
      sweep.removed++;
      sweep.bytesFreed += info.size;
    }
  }
  return sweep;
}

async function names(dir: string): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) out.push(e.name);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound || err instanceof Deno.errors.NotADirectory)) {
      throw err;
    }
  }
  return out;
}
