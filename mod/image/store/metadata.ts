/**
 * What the store records about images, as shapes (mod/shape.ts): files are
 * checked when read back, since anything on disk may be damaged or
 * hand-edited.
 */
import {
  array,
  boolean,
  dictionary,
  integer,
  nonEmpty,
  object,
  oneOf,
  optional,
  type Out,
  ShapeError,
  string,
} from "../../shape.ts";
import { isDigest, parseDigest } from "../registry/digest.ts";
import type { ImageReference } from "../reference.ts";

export const digest = string(isDigest, "a digest (sha256:<64 hex>)");

const platformShape = object({
  os: nonEmpty,
  architecture: nonEmpty,
  variant: optional(nonEmpty),
});

/** Where an image came from: what a tag (or, for an untagged pull, a digest) points at. */
const originShape = {
  registry: nonEmpty,
  repository: nonEmpty,
  /** Absent for an image pulled by digest alone. */
  tag: optional(nonEmpty),
  /** The registry digest of what the reference names (the index of a multi-platform image). */
  digest: optional(digest),
  /** The chosen platform's manifest digest, when it differs from `digest`. */
  manifestDigest: optional(digest),
  /** The SERVER column: the registry host the image was fetched from, or how it got here. */
  server: string(),
  /** ISO 8601 time of the pull. */
  pulledAt: string(),
  /** The config digest: Docker's IMAGE ID, and the name of the image's files. */
  configDigest: digest,
  /** The cosign signature the site's policy required, as verified by the pull (signature/verify.ts). */
  signature: optional(object({ digest, key: digest })),
  /** The image is in the site's cluster store, under its manifest digest, not in this repository. */
  cluster: optional(boolean),
};

function hasTagOrDigest(origin: { tag?: string; digest?: string }, at: string): void {
  if (origin.tag === undefined && origin.digest === undefined) {
    throw new ShapeError(at, "a tag or a digest");
  }
}

/** One entry of the index: a reference and the image (config digest) it names. */
export const indexEntry = object(originShape, hasTagOrDigest);
export type IndexEntry = Out<typeof originShape>;

export const METADATA_VERSION = 1;

/** What a run needs of an image's config and tree (config_fields.ts), in every store. */
export const runFieldsShape = {
  platform: platformShape,
  env: array(string()),
  entrypoint: array(string()),
  cmd: array(string()),
  workdir: string(),
  user: string(),
  labels: dictionary(string()),
  /** The image's own /etc/passwd and /etc/group ("" when it has none). */
  passwd: string(),
  group: string(),
  /** The image's creation time from its config, when it says. */
  created: optional(string()),
  /** The newest GLIBC_x.y its libc.so.6 defines (image/glibc.ts); absent without one. */
  glibc: optional(string()),
  /** Bytes of the squashfs file. */
  size: integer(0),
  /** Digests of the layer blobs the image was built from. */
  layers: array(digest),
};

const metadataShape = {
  schemaVersion: oneOf([METADATA_VERSION]),
  ...originShape,
  ...runFieldsShape,
  /** The squashfs file's name in the images directory. */
  squashfs: string((s) => /^[a-z0-9]+-[a-f0-9]+\.sqsh$/.test(s), "a squashfs file name"),
};

/**
 * The metadata file of an image. Its origin fields are those of the pull
 * that stored it; other tags of the same image live in the index only.
 */
export const imageMetadata = object(metadataShape, hasTagOrDigest);
export type ImageMetadata = Out<typeof metadataShape>;

/** What a pull hands to `commit`; the store fills in the rest. */
export type NewImage =
  & Omit<ImageMetadata, "schemaVersion" | "size" | "squashfs" | "pulledAt">
  & { pulledAt?: string };

/** An image as listed: one per reference, so an image with two tags is listed twice. */
export interface ImageRecord extends ImageMetadata {
  /** The IMAGE ID: the config digest's hex. */
  id: string;
  /** `registry/repository:tag`, or `registry/repository@digest` for an untagged image. */
  reference: string;
  squashfsPath: string;
}

/** The file stem of an image's files: the config digest with ':' made file-name safe. */
export function imageStem(configDigest: string): string {
  const { algorithm, hex } = parseDigest(configDigest);
  return `${algorithm}-${hex}`;
}

/** The config digest an image's files are named for; undefined for a name no image has. */
export function digestOfStem(stem: string): string | undefined {
  const digest = stem.replace("-", ":");
  return isDigest(digest) ? digest : undefined;
}

/** The index key of a reference: by tag when it has one, else by digest. */
export function referenceKey(
  ref: Pick<ImageReference, "registry" | "repository" | "tag" | "digest">,
): string {
  const name = `${ref.registry}/${ref.repository}`;
  if (ref.tag !== undefined) return `${name}:${ref.tag}`;
  if (ref.digest !== undefined) return `${name}@${ref.digest}`;
  throw new Error(`reference ${name} has neither a tag nor a digest`);
}

export function originOf(meta: ImageMetadata | NewImage, pulledAt: string): IndexEntry {
  return {
    registry: meta.registry,
    repository: meta.repository,
    ...(meta.tag !== undefined && { tag: meta.tag }),
    ...(meta.digest !== undefined && { digest: meta.digest }),
    ...(meta.manifestDigest !== undefined && { manifestDigest: meta.manifestDigest }),
    server: meta.server,
    pulledAt,
    configDigest: meta.configDigest,
    ...(meta.signature !== undefined && { signature: meta.signature }),
    ...(meta.cluster && { cluster: true }),
  };
}
