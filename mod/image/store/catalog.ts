/**
 * The repository's catalog: the index (references -> config digests) and each
 * image's metadata file, read back defensively. Nothing damaged on disk may
 * crash a listing: a bad entry or file is skipped with a warning saying how
 * to get rid of it, and a damaged index is rebuilt from the metadata files.
 *
 * Sync file calls: every run's start reads the catalog, and each async call
 * costs ~0.5 ms in a fresh process (bench/startup.ts).
 */
import { compareStrings } from "../../compare.ts";
import { join } from "../../path.ts";
import { tryShape } from "../../shape.ts";
import type { Logger } from "../../log.ts";
import { writeFileAtomic } from "./atomic.ts";
import {
  digestOfStem,
  type ImageMetadata,
  imageMetadata,
  type ImageRecord,
  type IndexEntry,
  indexEntry,
  originOf,
  referenceKey,
} from "./metadata.ts";
import { imageFiles, METADATA_SUFFIX, type RepositoryPaths } from "./paths.ts";

const INDEX_VERSION = 1;

type Read<T> = { ok: true; value: T } | { ok: false; why: string };

/** A file that cannot be read for another reason than being absent throws: it is not damaged. */
function readJson(path: string): Read<unknown> {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return { ok: false, why: "missing" };
    throw err;
  }
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch {
    return { ok: false, why: "not valid JSON (cut short or overwritten)" };
  }
}

/** An image's metadata, checked against the schema and against the digest it is filed under. */
export function readMetadata(
  paths: RepositoryPaths,
  configDigest: string,
): Read<ImageMetadata> {
  const json = readJson(imageFiles(paths, configDigest).metadata);
  if (!json.ok) return json;
  const parsed = tryShape(imageMetadata, json.value);
  if (!parsed.ok) return parsed;
  if (parsed.value.configDigest !== configDigest) {
    return { ok: false, why: `it describes ${parsed.value.configDigest}` };
  }
  return parsed;
}

/**
 * The index entries. A missing index (a repository whose first commit was
 * interrupted right after its image landed) or a damaged one is rebuilt from
 * the metadata files, each of which names the reference it was pulled as.
 */
export function readIndex(paths: RepositoryPaths, logger: Logger): IndexEntry[] {
  const json = readJson(paths.index);
  if (!json.ok && json.why === "missing") return rebuildIndex(paths);
  const list = json.ok && isIndex(json.value) ? json.value.references : undefined;
  if (list === undefined) {
    logger.warn(
      `the image index "${paths.index}" is damaged (${
        json.ok ? "unexpected content" : json.why
      }); using the images' own metadata instead`,
    );
    return rebuildIndex(paths);
  }
  const entries: IndexEntry[] = [];
  for (const item of list) {
    const parsed = tryShape(indexEntry, item);
    if (parsed.ok) entries.push(parsed.value);
    else logger.warn(`skipping a damaged entry of "${paths.index}": ${parsed.why}`);
  }
  return entries;
}

function isIndex(v: unknown): v is { references: unknown[] } {
  return typeof v === "object" && v !== null &&
    (v as { version?: unknown }).version === INDEX_VERSION &&
    Array.isArray((v as { references?: unknown }).references);
}

/** One entry per valid metadata file; where two claim a reference, the later pull wins. */
function rebuildIndex(paths: RepositoryPaths): IndexEntry[] {
  const byKey = new Map<string, IndexEntry>();
  for (const stem of metadataStems(paths)) {
    const digest = digestOfStem(stem);
    const meta = digest === undefined ? undefined : readMetadata(paths, digest);
    if (!meta?.ok) continue;
    const entry = originOf(meta.value, meta.value.pulledAt);
    const key = referenceKey(entry);
    const other = byKey.get(key);
    if (other === undefined || other.pulledAt < entry.pulledAt) byKey.set(key, entry);
  }
  return [...byKey.values()];
}

/** Stems of the metadata files present, whatever state they are in. */
function metadataStems(paths: RepositoryPaths): string[] {
  const stems: string[] = [];
  try {
    for (const e of Deno.readDirSync(paths.images)) {
      if (e.isFile && e.name.endsWith(METADATA_SUFFIX) && !e.name.startsWith(".")) {
        stems.push(e.name.slice(0, -METADATA_SUFFIX.length));
      }
    }
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  return stems;
}

/** Rewrites the index atomically, one entry per reference key, sorted for stable diffs. */
export async function writeIndex(
  paths: RepositoryPaths,
  entries: IndexEntry[],
  fileMode: number,
): Promise<void> {
  const sorted = [...entries].sort((a, b) => compareStrings(referenceKey(a), referenceKey(b)));
  const text = JSON.stringify({ version: INDEX_VERSION, references: sorted }, null, 2) + "\n";
  await writeFileAtomic(paths.index, new TextEncoder().encode(text), fileMode);
}

/**
 * The usable images behind `entries`: those whose metadata is valid and whose
 * squashfs file exists. The others are reported through `skip`.
 */
export function resolveRecords(
  paths: RepositoryPaths,
  entries: IndexEntry[],
  skip: (entry: IndexEntry, why: string) => void,
): ImageRecord[] {
  const images = new Map<string, Read<ImageMetadata & { squashfsPath: string }>>();
  const records: ImageRecord[] = [];
  for (const entry of entries) {
    let image = images.get(entry.configDigest);
    if (image === undefined) {
      image = loadImage(paths, entry.configDigest);
      images.set(entry.configDigest, image);
    }
    if (!image.ok) {
      skip(entry, image.why);
      continue;
    }
    records.push(toRecord(entry, image.value));
  }
  return records;
}

function loadImage(
  paths: RepositoryPaths,
  configDigest: string,
): Read<ImageMetadata & { squashfsPath: string }> {
  const meta = readMetadata(paths, configDigest);
  const file = imageFiles(paths, configDigest).metadata;
  if (!meta.ok) return { ok: false, why: `its metadata "${file}" is ${describe(meta.why)}` };
  const squashfsPath = join(paths.images, meta.value.squashfs);
  try {
    if (!Deno.statSync(squashfsPath).isFile) throw new Deno.errors.NotFound();
  } catch {
    return { ok: false, why: `its squashfs file "${squashfsPath}" is missing` };
  }
  return { ok: true, value: { ...meta.value, squashfsPath } };
}

function describe(why: string): string {
  return why === "missing" ? "missing" : `damaged (${why})`;
}

/** An entry's reference fields over the image's own; the origin of another tag is not this one. */
function toRecord(entry: IndexEntry, image: ImageMetadata & { squashfsPath: string }): ImageRecord {
  const { tag: _t, digest: _d, manifestDigest: _m, signature: _s, ...intrinsic } = image;
  return {
    ...intrinsic,
    ...entry,
    id: entry.configDigest.slice(entry.configDigest.indexOf(":") + 1),
    reference: referenceKey(entry),
  };
}
