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
import { isDigest, parseDigest } from "../registry/digest.ts";

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

/**
 * The digest whose image file `path` is, when it is literally
 * STORE/images/<algorithm>/<hex>/image.sqsh: the helper's rule
 * (helper/paths.c, store_image_in), which mounts nothing else of the store.
 */
export function storeImageDigest(path: string, root: string): string | undefined {
  const prefix = `${root}/images/`;
  if (!path.startsWith(prefix) || !path.endsWith(`/${IMAGE_FILE}`)) return undefined;
  const [algorithm, hex, ...rest] = path.slice(prefix.length, -IMAGE_FILE.length - 1).split("/");
  const digest = `${algorithm}:${hex}`;
  return rest.length === 0 && isDigest(digest) ? digest : undefined;
}

export function claimDir(paths: ClusterPaths, digest: string): string {
  return join(paths.staging, `${digestName(digest)}.claim`);
}

export function refFile(paths: ClusterPaths, uid: number, digest: string): string {
  return join(paths.refs, String(uid), digestName(digest));
}
