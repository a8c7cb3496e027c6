/** Disk space of a repository: what it holds, and removing cached blobs no image needs. */
import { join } from "../../path.ts";
import { removeQuietly } from "./atomic.ts";
import { tryAcquireLock } from "./lock.ts";
import { STALE_AFTER_MS } from "./temp.ts";
import { PARTIAL_SUFFIX } from "./paths.ts";

export interface DiskUsage {
  /** Images the index names (each counted once, whatever its tags). */
  imageCount: number;
  /** Bytes of squashfs images and their metadata, orphans of interrupted commits included. */
  images: number;
  /** Complete cached layer blobs, and those of them that no stored image was built from. */
  blobCount: number;
  blobs: number;
  unusedBlobCount: number;
  unusedBlobs: number;
  /** Downloads in progress, or left by pulls that were stopped (resumed by the next pull). */
  partialCount: number;
  partials: number;
  /** Bytes of the partials unchanged for STALE_AFTER_MS that no pull holds: what prune removes. */
  stalePartials: number;
  /** Bytes of pulls in progress or left by dead ones. */
  temporary: number;
}

/** What `blobsDir` holds, complete blobs apart from partial downloads. */
export async function blobUsage(
  blobsDir: string,
  inUse: Set<string>,
  now = Date.now(),
): Promise<Omit<DiskUsage, "imageCount" | "images" | "temporary">> {
  const usage = {
    blobCount: 0,
    blobs: 0,
    unusedBlobCount: 0,
    unusedBlobs: 0,
    partialCount: 0,
    partials: 0,
    stalePartials: 0,
  };
  for (const algorithm of await names(blobsDir)) {
    const dir = join(blobsDir, algorithm);
    for (const name of await names(dir)) {
      const info = await Deno.lstat(join(dir, name)).catch(() => undefined);
      if (info === undefined || !info.isFile) continue;
      if (name.endsWith(PARTIAL_SUFFIX)) {
        usage.partialCount++;
        usage.partials += info.size;
        if (isStalePartial(info, now) && await unlocked(join(dir, name))) {
          usage.stalePartials += info.size;
        }
        continue;
      }
      usage.blobCount++;
      usage.blobs += info.size;
      if (!inUse.has(`${algorithm}:${name}`)) {
        usage.unusedBlobCount++;
        usage.unusedBlobs += info.size;
      }
    }
  }
  return usage;
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

/** A partial download unchanged this long has no live pull: a stalled transfer times out sooner. */
function isStalePartial(info: Deno.FileInfo, now: number): boolean {
  return now - (info.mtime?.getTime() ?? now) >= STALE_AFTER_MS;
}

/** No pull on this node holds the partial's lock (registry/blobs.ts takes it while writing). */
async function unlocked(path: string): Promise<boolean> {
  const lock = await tryAcquireLock(path, "exclusive").catch(() => undefined);
  lock?.release();
  return lock !== undefined;
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
        if (!isStalePartial(info, now)) continue;
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
