/**
 * Where things live in a cluster store (docs/design/store.md). Every image is
 * a directory named by its platform manifest's digest, committed by one
 * rename; nothing a reader looks at is ever written in place.
 *
 *   STORE/images/<algorithm>/<hex>/image.sqsh   the squashfs file
 *   STORE/images/<algorithm>/<hex>/meta.json    what runs need (meta.ts)
 *   STORE/staging/<algorithm>-<hex>.claim/      a publish in progress (claim.ts)
 *   STORE/refs/<uid>/<algorithm>-<hex>          uid holds a tag of the image
 *   STORE/trash/                                renamed here, then removed
 */
import { join } from "../../path.ts";
import { parseDigest } from "../registry/digest.ts";

export const IMAGE_FILE = "image.sqsh";
export const META_FILE = "meta.json";

export interface ClusterPaths {
  root: string;
  images: string;
  staging: string;
  refs: string;
  trash: string;
}

export function clusterPaths(root: string): ClusterPaths {
  return {
    root,
    images: join(root, "images"),
    staging: join(root, "staging"),
    refs: join(root, "refs"),
    trash: join(root, "trash"),
  };
}

/** `<algorithm>-<hex>`: a digest as one file name. */
export function digestName(digest: string): string {
  const { algorithm, hex } = parseDigest(digest);
  return `${algorithm}-${hex}`;
}

/** The committed directory of the image whose manifest has `digest`. */
export function imageDir(paths: ClusterPaths, digest: string): string {
  const { algorithm, hex } = parseDigest(digest);
  return join(paths.images, algorithm, hex);
}

export function claimDir(paths: ClusterPaths, digest: string): string {
  return join(paths.staging, `${digestName(digest)}.claim`);
}

export function refFile(paths: ClusterPaths, uid: number, digest: string): string {
  return join(paths.refs, String(uid), digestName(digest));
}
