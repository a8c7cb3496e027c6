/**
 * What `shoal run IMAGE` or `shoal rmi IMAGE` may name: a reference (by tag,
 * by digest, or tag@digest, normalized as `docker pull` does) or an IMAGE ID
 * (full, or a unique prefix of at least 4 hex digits, with or without
 * "sha256:"). As with Docker, a name that is both (`cafe`) is first a
 * reference.
 *
 * A name without its registry ("busybox:1.0") is a short name: it names the
 * stored image of that path and tag on any registry, so that what `shoal
 * images` lists works however it is typed. When several registries have one,
 * the name is refused with the full names to choose from: picking one (say
 * Docker Hub's) would silently run another image than the user meant.
 */
import { compareStrings } from "../../compare.ts";
import { ShoalError, UsageError } from "../../errors.ts";
import { formatReference, type ImageReference, parseName } from "../reference.ts";
import { type IndexEntry, referenceKey } from "./metadata.ts";

export interface ImageQuery {
  /** As the user wrote it, for messages. */
  text: string;
  ref?: ImageReference;
  /** For a short name: the repository path as written, on any registry. */
  shortPath?: string;
  idPrefix?: string;
}

const ID_PREFIX_RE = /^(sha256:)?([a-f0-9]{4,64})$/;

/** Throws the reference parser's UsageError for input that is neither form. */
export function parseQuery(input: string | ImageReference): ImageQuery {
  if (typeof input !== "string") return { text: formatReference(input), ref: input };
  const id = ID_PREFIX_RE.exec(input);
  const query: ImageQuery = { text: input };
  if (id !== null) query.idPrefix = id[2];
  if (id?.[1] !== undefined) return query;
  try {
    const { ref, shortPath } = parseName(input);
    query.ref = ref;
    if (shortPath !== undefined) query.shortPath = shortPath;
  } catch (err) {
    if (!(err instanceof UsageError) || query.idPrefix === undefined) throw err;
  }
  return query;
}

function digestMatches(entry: IndexEntry, digest: string): boolean {
  return entry.digest === digest || entry.manifestDigest === digest;
}

/** Whether an entry is what a query's name names: the tag and the digest must both fit when given. */
function referenceMatches(entry: IndexEntry, query: ImageQuery, ref: ImageReference): boolean {
  const named = (entry.registry === ref.registry && entry.repository === ref.repository) ||
    entry.repository === query.shortPath;
  return named && (ref.tag === undefined || entry.tag === ref.tag) &&
    (ref.digest === undefined || digestMatches(entry, ref.digest));
}

export interface Selection {
  /** Most recently pulled first. */
  entries: IndexEntry[];
  /** Selected by IMAGE ID: every reference of one image. */
  byId: boolean;
}

/**
 * The entries a query names. A short name that fits images of several names,
 * or an ID prefix that fits several images, is refused, not guessed.
 */
export function selectEntries(entries: IndexEntry[], query: ImageQuery): Selection {
  const newestFirst = (list: IndexEntry[]) =>
    list.sort((a, b) => compareStrings(b.pulledAt, a.pulledAt));
  if (query.ref !== undefined) {
    const ref = query.ref;
    const byRef = entries.filter((e) => referenceMatches(e, query, ref));
    if (byRef.length > 0 || query.idPrefix === undefined) {
      refuseAmbiguous(query, byRef);
      return { entries: newestFirst(byRef), byId: false };
    }
  }
  const prefix = query.idPrefix ?? "";
  const ids = new Set(
    entries.map((e) => e.configDigest).filter((d) =>
      d.slice(d.indexOf(":") + 1).startsWith(prefix)
    ),
  );
  if (ids.size > 1) {
    const shown = [...ids].slice(0, 3).map((d) => d.slice(d.indexOf(":") + 1, d.indexOf(":") + 13));
    throw new ShoalError(
      `"${query.text}" matches ${ids.size} images (${shown.join(", ")}${
        ids.size > 3 ? ", ..." : ""
      })`,
      { hint: "give more digits of the IMAGE ID, or the name and tag" },
    );
  }
  return { entries: newestFirst(entries.filter((e) => ids.has(e.configDigest))), byId: true };
}

/** The references a query's name fits, sorted: for telling the user where an image is. */
export function matchingReferences(entries: IndexEntry[], query: ImageQuery): string[] {
  const ref = query.ref;
  if (ref === undefined) return [];
  const keys = entries.filter((e) => referenceMatches(e, query, ref)).map(referenceKey);
  return [...new Set(keys)].sort(compareStrings);
}

function refuseAmbiguous(query: ImageQuery, hits: IndexEntry[]): void {
  const names = new Set(hits.map((e) => `${e.registry}/${e.repository}`));
  if (names.size < 2) return;
  const keys = [...new Set(hits.map(referenceKey))].sort(compareStrings);
  throw new ShoalError(`"${query.text}" could be ${keys.length} images: ${keys.join(", ")}`, {
    hint: "give the full name of the one you mean, as `shoal images` lists it",
  });
}
