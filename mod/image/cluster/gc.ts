/**
 * The store's garbage collection (`shoal store gc`, run by its owner, say
 * from cron): an image no user holds a reference to is marked with the time
 * it was first seen so, and removed once it stayed unreferenced for
 * `store.retentionDays` (a new reference drops the mark); claims of publishes
 * that died and what the trash holds go too. Removal renames the image's
 * directory into the trash first, so a reader sees the image whole or not at
 * all; a running container keeps its image, whose file its loop device holds
 * open.
 */
import { join } from "../../path.ts";
import { trashAndRemove } from "./claim.ts";
import { exists } from "../../sys/fs.ts";
import { type ClusterPaths, digestName, imageDir } from "./layout.ts";
import { isDigest } from "../registry/digest.ts";

export interface GcOptions {
  retentionMs: number;
  /** Claims untouched this long are dead publishes. */
  staleMs: number;
  now?: number;
}

export interface GcReport {
  /** Manifest digests of the images removed. */
  removed: string[];
  /** Images without a reference, kept until their retention ends. */
  unreferenced: number;
  /** Dead publishes' claims removed. */
  claims: number;
}

const MARKS = "unreferenced";

function names(dir: string): string[] {
  try {
    return [...Deno.readDirSync(dir)].map((e) => e.name);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return [];
    throw err;
  }
}

/** Every image's digest: images/<algorithm>/<hex> (anything else there is not an image). */
function storedDigests(paths: ClusterPaths): string[] {
  return names(paths.images).flatMap((alg) =>
    names(join(paths.images, alg)).map((hex) => `${alg}:${hex}`)
  ).filter(isDigest);
}

/** The digests some user holds a reference to: refs/<uid>/<algorithm>-<hex>. */
function referenced(paths: ClusterPaths): Set<string> {
  const held = new Set<string>();
  for (const uid of names(paths.refs)) {
    for (const name of names(join(paths.refs, uid))) held.add(name.replace("-", ":"));
  }
  return held;
}

function removeIfThere(path: string): void {
  try {
    Deno.removeSync(path);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
}

export async function collectGarbage(paths: ClusterPaths, options: GcOptions): Promise<GcReport> {
  const now = options.now ?? Date.now();
  const marks = join(paths.root, MARKS);
  Deno.mkdirSync(marks, { recursive: true, mode: 0o755 });
  const held = referenced(paths);
  const report: GcReport = { removed: [], unreferenced: 0, claims: 0 };
  for (const digest of storedDigests(paths)) {
    const mark = join(marks, digestName(digest));
    if (held.has(digest)) {
      removeIfThere(mark);
      continue;
    }
    let since: number;
    try {
      since = Deno.statSync(mark).mtime?.getTime() ?? now;
    } catch {
      Deno.writeFileSync(mark, new Uint8Array(), { mode: 0o644 });
      since = now;
    }
    if (now - since < options.retentionMs) {
      report.unreferenced++;
      continue;
    }
    // A publish may have taken a reference since the scan.
    if (names(paths.refs).some((uid) => exists(join(paths.refs, uid, digestName(digest))))) {
      removeIfThere(mark);
      continue;
    }
    if (await trashAndRemove(paths, imageDir(paths, digest))) report.removed.push(digest);
    removeIfThere(mark);
  }
  for (const name of names(paths.staging)) {
    const claim = join(paths.staging, name);
    const touched = Deno.statSync(claim).mtime?.getTime() ?? now;
    if (now - touched > options.staleMs && await trashAndRemove(paths, claim)) report.claims++;
  }
  for (const name of names(paths.trash)) {
    await Deno.remove(join(paths.trash, name), { recursive: true }).catch(() => {});
  }
  return report;
}
