/** Where each part of a repository lives (the layout is described in store.ts). */
import { toHex } from "../../bytes.ts";
import { join } from "../../path.ts";
import { parseDigest } from "../registry/digest.ts";
import { imageStem } from "./metadata.ts";

export interface RepositoryPaths {
  root: string;
  /** flock target: shared for readers, exclusive for writers. */
  lock: string;
  index: string;
  images: string;
  /** The registry client's content-addressed cache: `blobs/<algorithm>/<hex>`. */
  blobs: string;
  /** Pulls in progress: one directory each, beside its lock file. */
  tmp: string;
  /** Pull locks, one per reference, and `pulling`, held shared by every pull. */
  locks: string;
  pulling: string;
}

export function repositoryPaths(root: string): RepositoryPaths {
  const locks = join(root, "locks");
  return {
    root,
    lock: join(root, "lock"),
    index: join(root, "index.json"),
    images: join(root, "images"),
    blobs: join(root, "blobs"),
    tmp: join(root, "tmp"),
    locks,
    pulling: join(locks, "pulling"),
  };
}

export const SQUASHFS_SUFFIX = ".sqsh";
export const METADATA_SUFFIX = ".json";

export interface ImageFiles {
  stem: string;
  squashfs: string;
  metadata: string;
}

export function imageFiles(paths: RepositoryPaths, configDigest: string): ImageFiles {
  const stem = imageStem(configDigest);
  return {
    stem,
    squashfs: join(paths.images, stem + SQUASHFS_SUFFIX),
    metadata: join(paths.images, stem + METADATA_SUFFIX),
  };
}

/** Where the blob with `digest` is cached under `blobsDir` (a repository's `blobs`). */
export function blobPath(blobsDir: string, digest: string): string {
  const { algorithm, hex } = parseDigest(digest);
  return join(blobsDir, algorithm, hex);
}

/** A blob while it downloads (registry/blobs.ts); renamed to `blobPath` once verified. */
export function partialPath(blobFile: string): string {
  return `${blobFile}${PARTIAL_SUFFIX}`;
}

export const PARTIAL_SUFFIX = ".partial";

/** A reference key hashed into a file name: keys hold '/' and ':'. */
export async function pullLockPath(paths: RepositoryPaths, key: string): Promise<string> {
  const hash = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(key));
  return join(paths.locks, `pull-${toHex(new Uint8Array(hash)).slice(0, 32)}`);
}

/** Directory and file modes: the centralized repository is readable by everyone. */
export interface Modes {
  dir: number;
  file: number;
}

export const CENTRALIZED_MODES: Modes = { dir: 0o755, file: 0o644 };
/** Private directories; files need no more than the directories let through. */
export const LOCAL_MODES: Modes = { dir: 0o700, file: 0o644 };
