/**
 * What the store records about images, as zod schemas: files are validated
 * when read back, since anything on disk may be damaged or hand-edited.
 */
import * as z from "../../zod.ts";
import { isDigest, parseDigest } from "../registry/digest.ts";
import type { ImageReference } from "../reference.ts";

const digest = z.string().check(
  z.refine(isDigest, { message: "must be a digest (sha256:<64 hex>)" }),
);

const nonEmpty = z.string().check(z.minLength(1));

const platformSchema = z.object({
  os: nonEmpty,
  architecture: nonEmpty,
  variant: z.optional(nonEmpty),
});

/** Where an image came from: what a tag (or, for an untagged pull, a digest) points at. */
const originShape = {
  registry: nonEmpty,
  repository: nonEmpty,
  /** Absent for an image pulled by digest alone. */
  tag: z.optional(nonEmpty),
  /** The registry digest of what the reference names (the index of a multi-platform image). */
  digest: z.optional(digest),
  /** The chosen platform's manifest digest, when it differs from `digest`. */
  manifestDigest: z.optional(digest),
  /** The SERVER column: the registry host the image was fetched from, or how it got here. */
  server: z.string(),
  /** ISO 8601 time of the pull. */
  pulledAt: z.string(),
  /** The config digest: Docker's IMAGE ID, and the name of the image's files. */
  configDigest: digest,
};

function hasTagOrDigest(origin: { tag?: string; digest?: string }): boolean {
  return origin.tag !== undefined || origin.digest !== undefined;
}
const TAG_OR_DIGEST = { message: "needs a tag or a digest" };

/** One entry of the index: a reference and the image (config digest) it names. */
export const indexEntrySchema = z.object(originShape).check(
  z.refine(hasTagOrDigest, TAG_OR_DIGEST),
);
export type IndexEntry = z.output<typeof indexEntrySchema>;

export const METADATA_VERSION = 1;

/**
 * The metadata file of an image. Its origin fields are those of the pull
 * that stored it; other tags of the same image live in the index only.
 */
export const imageMetadataSchema = z.object({
  schemaVersion: z.literal(METADATA_VERSION),
  ...originShape,
  platform: platformSchema,
  env: z.array(z.string()),
  entrypoint: z.array(z.string()),
  cmd: z.array(z.string()),
  workdir: z.string(),
  user: z.string(),
  labels: z.record(z.string(), z.string()),
  /** The image's own /etc/passwd and /etc/group ("" when it has none). */
  passwd: z.string(),
  group: z.string(),
  /** The image's creation time from its config, when it says. */
  created: z.optional(z.string()),
  /** Bytes of the squashfs file. */
  size: z.int().check(z.nonnegative()),
  /** The squashfs file's name in the images directory. */
  squashfs: z.string().check(z.regex(/^[a-z0-9]+-[a-f0-9]+\.sqsh$/)),
  /** Digests of the layer blobs the image was built from: what blob gc keeps. */
  layers: z.array(digest),
}).check(z.refine(hasTagOrDigest, TAG_OR_DIGEST));
export type ImageMetadata = z.output<typeof imageMetadataSchema>;

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
  };
}
