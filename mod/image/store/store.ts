/**
 * The image store: one repository directory of squashfs images, safe to use
 * from any number of processes at once and from several nodes of a cluster.
 *
 * Layout of a repository:
 *
 *   lock                       flock target: shared for readers (images, run
 *                              lookups), exclusive for writers (commit, rmi,
 *                              gc); holds the last writer's pid and host
 *   index.json                 {"version": 1, "references": [...]}: each
 *                              reference (registry/repository:tag, or
 *                              registry/repository@digest when pulled by
 *                              digest alone) with its registry digest, SERVER,
 *                              pull time and config digest
 *   images/<alg>-<hex>.sqsh    the image's squashfs, named by config digest
 *   images/<alg>-<hex>.json    its metadata (ImageMetadata)
 *   blobs/<alg>/<hex>          layer cache of the registry client (a
 *                              `<hex>.partial` while it downloads)
 *   tmp/<name>/ + <name>.lock  work directory of a pull in progress
 *   locks/pull-<hash>          one per reference: a second pull of the same
 *                              image waits, then finds it up to date
 *   locks/pulling              held shared by every pull, so blob gc never
 *                              removes a layer a running pull needs
 *
 * Images are filed by config digest (Docker's IMAGE ID): it fixes the layers
 * and so the squashfs. Two tags of one image share one file; `rmi` of one
 * removes its index entry, and the file goes with the last entry naming it;
 * a re-pull of a tag that moved points the entry at the new image and the
 * old one goes if nothing else names it.
 *
 * Every change is a rename of a fully written, fsynced file. A commit writes
 * the metadata under a temp name, renames the squashfs into images/, renames
 * the metadata, then rewrites the index. An image counts only once the index
 * names it and both of its files are valid, so a writer killed at any moment
 * (SIGKILL included) leaves the old state or the new image, and the next
 * writer removes what it left: temp files, unnamed image files, and work
 * directories whose pull died. Listing checks each image's files and skips a
 * damaged one with a warning; a damaged index is rebuilt from the metadata.
 */
import { basename, join } from "../../path.ts";
import { ShoalError } from "../../errors.ts";
import type { ImageReference } from "../reference.ts";
import { atomicTempPath, isAtomicTemp, removeQuietly, syncDir, writeDurable } from "./atomic.ts";
import { readIndex, readMetadata, writeIndex } from "./catalog.ts";
import { localWriteError } from "./write_error.ts";
import { acquireLock, type FileLock, tryAcquireLock } from "./lock.ts";
import {
  digestOfStem,
  type ImageMetadata,
  imageMetadata,
  type ImageRecord,
  type IndexEntry,
  METADATA_VERSION,
  type NewImage,
  originOf,
  referenceKey,
} from "./metadata.ts";
import {
  blobPath,
  CENTRALIZED_MODES,
  imageFiles,
  LOCAL_MODES,
  METADATA_SUFFIX,
  type Modes,
  partialPath,
  pullLockPath,
  SQUASHFS_SUFFIX,
} from "./paths.ts";
import { parseQuery, selectEntries } from "./query.ts";
import { type StoreOptions, StoreReader } from "./reader.ts";
import { blobUsage, type DiskUsage, sweepBlobs, treeSize } from "./space.ts";
import { createTempDir, removeStaleTempDirs, type TempDir } from "./temp.ts";

export type { DiskUsage, ImageMetadata, ImageRecord, NewImage, StoreOptions, TempDir };

export interface Removal {
  /** Reference keys whose entries were removed. */
  untagged: string[];
  /** Config digests whose files were removed: no reference was left for them. */
  deleted: string[];
  /** Manifest digests of cluster store images no reference here names any more. */
  released: string[];
}

export interface GcResult {
  blobsRemoved: number;
  bytesFreed: number;
  /** Why blobs were left alone, when they were. */
  skipped?: string;
}

/** Opens a repository; nothing is created until something is written. */
export function openStore(root: string, options: StoreOptions = {}): ImageStore {
  return new ImageStore(root, options);
}

/** A repository to write as well as read (reader.ts). */
export class ImageStore extends StoreReader {
  readonly #modes: Modes;
  readonly #pullTimeout: number;
  #layoutReady = false;

  constructor(root: string, options: StoreOptions = {}) {
    super(root, options);
    this.#modes = this.centralized ? CENTRALIZED_MODES : LOCAL_MODES;
    this.#pullTimeout = options.pullLockTimeoutSeconds ?? 3600;
  }

  /** The registry client's blob cache directory (its `cacheDir`). */
  get blobsDir(): string {
    return this.paths.blobs;
  }

  /** Where the blob with `digest` is cached. */
  blobPath(digest: string): string {
    return blobPath(this.paths.blobs, digest);
  }

  /**
   * A work directory for one pull, on the repository's filesystem: build the
   * squashfs there and hand it to `commit`. Remove it when done (`await using`).
   */
  async tempDir(): Promise<TempDir> {
    await this.#prepareForWriting();
    return await createTempDir(this.paths.tmp, this.#modes).catch((err) => {
      throw localWriteError(this.fsError(err), this.root);
    });
  }

  /**
   * Runs `fn` (a whole pull) while holding the pull lock of `ref`: a second
   * pull of the same reference waits for the first, so `fn` should look the
   * image up first and skip the work when it is there and up to date.
   */
  async withPullLock<T>(ref: ImageReference, fn: () => Promise<T>): Promise<T> {
    await this.#prepareForWriting();
    const key = referenceKey(ref);
    // Creating a lock file can fail like any write (a full disk): say so in one line.
    const lockFailed = (path: string) => (err: unknown) => {
      throw localWriteError(this.fsError(err), path);
    };
    const pullLock = await pullLockPath(this.paths, key);
    const pull = await acquireLock(pullLock, {
      mode: "exclusive",
      timeoutSeconds: this.#pullTimeout,
      what: `pull lock of ${key}`,
      createMode: this.#modes.file,
      onWait: (holders) => this.logger.info(`waiting for another pull of ${key} (${holders})`),
    }).catch(lockFailed(pullLock));
    try {
      const pulling = await acquireLock(this.paths.pulling, {
        mode: "shared",
        timeoutSeconds: this.timeout,
        what: "pull registry lock",
        createMode: this.#modes.file,
      }).catch(lockFailed(this.paths.pulling));
      try {
        return await fn();
      } finally {
        pulling.release();
      }
    } finally {
      pull.release();
    }
  }

  /**
   * Stores an image under its reference (tag, or digest for an untagged
   * pull), taking over `squashfsTemp` (a file in a `tempDir()`): it is moved
   * into the repository, or removed when the image is already there or the
   * commit fails. A full disk or quota gives one line and leaves nothing.
   */
  async commit(image: NewImage, squashfsTemp: string): Promise<ImageRecord> {
    try {
      const key = referenceKey(image);
      await this.#prepareForWriting();
      if (!squashfsTemp.startsWith(this.paths.tmp + "/")) {
        throw new Error(`commit: ${squashfsTemp} is not in a tempDir() of ${this.root}`);
      }
      const files = imageFiles(this.paths, image.configDigest);
      const pulledAt = image.pulledAt ?? new Date().toISOString();
      const meta = imageMetadata({
        ...image,
        schemaVersion: METADATA_VERSION,
        pulledAt,
        // Flushed before taking the lock: readers must not wait for the image to reach the disk.
        size: await this.#flush(squashfsTemp),
        squashfs: basename(files.squashfs),
      }, "");
      return await this.#writing(async () => {
        const entries = readIndex(this.paths, this.logger);
        const added = !this.#intact(meta.configDigest);
        if (added) await this.#placeImage(key, meta, squashfsTemp);
        else await removeQuietly(squashfsTemp);
        const next = entries.filter((e) => referenceKey(e) !== key).concat(
          originOf(meta, pulledAt),
        );
        try {
          await writeIndex(this.paths, next, this.#modes.file);
        } catch (err) {
          if (added) await this.#removeImageFiles(meta.configDigest);
          throw err;
        }
        this.logger.debug(`commit ${key}: index updated`);
        await this.#tidy(next);
        const [record] = this.resolve(next.filter((e) => referenceKey(e) === key));
        if (record === undefined) throw new Error(`commit ${key}: the image vanished`);
        return record;
      });
    } catch (err) {
      await removeQuietly(squashfsTemp);
      throw localWriteError(this.fsError(err), this.root);
    }
  }

  /**
   * Stores a reference to an image of the cluster store: the index entry
   * alone, the store having the files. Refused when the store lacks the image.
   */
  async commitClusterReference(
    origin: Omit<IndexEntry, "cluster" | "pulledAt">,
  ): Promise<ImageRecord> {
    const entry: IndexEntry = { ...origin, pulledAt: new Date().toISOString(), cluster: true };
    const key = referenceKey(entry);
    const [record] = this.resolve([entry]);
    if (record === undefined) {
      throw new ShoalError(`the cluster store has no usable image for ${key}`);
    }
    await this.#prepareForWriting();
    return await this.#writing(async () => {
      const next = readIndex(this.paths, this.logger).filter((e) => referenceKey(e) !== key);
      next.push(entry);
      await writeIndex(this.paths, next, this.#modes.file);
      await this.#tidy(next);
      return record;
    }).catch((err) => {
      throw localWriteError(this.fsError(err), this.root);
    });
  }

  /**
   * `rmi`: removes what a reference or IMAGE ID names from the index, and an
   * image's files once no reference is left for them. Works whatever state
   * the files are in, gone included.
   */
  async remove(query: string | ImageReference): Promise<Removal> {
    const q = parseQuery(query);
    await this.#prepareForWriting();
    return await this.#writing(async () => {
      const entries = readIndex(this.paths, this.logger);
      const { entries: hits, byId } = selectEntries(entries, q);
      if (hits.length === 0) throw this.notFound(q.text);
      const untagged = [...new Set(hits.map(referenceKey))];
      if (byId && untagged.length > 1) {
        throw new ShoalError(
          `image ${q.text} has ${untagged.length} references: ${untagged.join(", ")}`,
          { hint: "remove them one by one, by name" },
        );
      }
      const rest = entries.filter((e) => !untagged.includes(referenceKey(e)));
      await writeIndex(this.paths, rest, this.#modes.file);
      const local = (list: IndexEntry[]) => list.filter((e) => !e.cluster);
      const kept = new Set(local(rest).map((e) => e.configDigest));
      const deleted = [...new Set(local(hits).map((e) => e.configDigest))].filter((d) =>
        !kept.has(d)
      );
      const inStore = (list: IndexEntry[]) =>
        list.flatMap((e) => e.cluster ? [e.manifestDigest ?? e.digest!] : []);
      const held = new Set(inStore(rest));
      const released = [...new Set(inStore(hits))].filter((d) => !held.has(d));
      await this.#tidy(rest);
      return { untagged, deleted, released };
    }).catch((err) => {
      throw this.fsError(err);
    });
  }

  /**
   * Removes cached blobs that no stored image was built from, after the
   * usual clean-up. Skips the blobs while a pull is running.
   */
  async gc(): Promise<GcResult> {
    await this.#prepareForWriting();
    return await this.#writing(async () => {
      const entries = readIndex(this.paths, this.logger);
      await this.#tidy(entries);
      let pulling: FileLock | undefined | null;
      try {
        pulling = await tryAcquireLock(this.paths.pulling, "exclusive");
      } catch (err) {
        if (!(err instanceof Deno.errors.NotFound)) throw err;
        pulling = null; // no pull ever ran here
      }
      if (pulling === undefined) {
        return { blobsRemoved: 0, bytesFreed: 0, skipped: "a pull is in progress" };
      }
      try {
        const sweep = await sweepBlobs(this.paths.blobs, this.#blobsInUse(entries));
        return { blobsRemoved: sweep.removed, bytesFreed: sweep.bytesFreed };
      } finally {
        pulling?.release();
      }
    }).catch((err) => {
      throw this.fsError(err);
    });
  }

  /**
   * Removes the cached blobs among `digests` that no stored image was built
   * from: what a pull that failed had downloaded for itself (a layer that
   * would not convert, say a squashfs pushed as one) is not kept.
   */
  async dropBlobs(digests: string[]): Promise<void> {
    await this.#writing(async () => {
      const keep = this.#blobsInUse(readIndex(this.paths, this.logger));
      for (const digest of digests) {
        if (!keep.has(digest)) await removeQuietly(this.blobPath(digest));
      }
    });
  }

  /**
   * Removes the partial downloads of `digests` that no pull is writing now
   * (their lock is free): after a failure that a resume cannot fix (a full
   * disk), they would only keep the space taken.
   */
  async dropPartials(digests: string[]): Promise<void> {
    for (const digest of digests) {
      const partial = partialPath(this.blobPath(digest));
      const lock = await tryAcquireLock(partial, "exclusive").catch(() => undefined);
      if (lock === undefined) continue; // gone, or another pull is writing it
      try {
        await removeQuietly(partial);
      } finally {
        lock.release();
      }
    }
  }

  /** The config and layer digests of the images the index names. */
  #blobsInUse(entries: IndexEntry[]): Set<string> {
    const keep = new Set<string>();
    for (const digest of new Set(entries.map((e) => e.configDigest))) {
      const meta = readMetadata(this.paths, digest);
      if (!meta.ok) continue;
      keep.add(digest);
      for (const layer of meta.value.layers) keep.add(layer);
    }
    return keep;
  }

  /** What the repository holds: images, cached blobs (used or not), partial downloads, pulls. */
  async diskUsage(): Promise<DiskUsage> {
    const [entries, inUse] = await this.reading(() => {
      const entries = readIndex(this.paths, this.logger);
      return [entries, this.#blobsInUse(entries)] as const;
    });
    return {
      imageCount: new Set(entries.map((e) => e.configDigest)).size,
      images: await treeSize(this.paths.images),
      ...await blobUsage(this.paths.blobs, inUse),
      temporary: await treeSize(this.paths.tmp),
    };
  }

  /** Both files of the image are in place and its metadata is valid. */
  #intact(configDigest: string): boolean {
    const meta = readMetadata(this.paths, configDigest);
    if (!meta.ok) return false;
    try {
      return Deno.statSync(join(this.paths.images, meta.value.squashfs)).isFile;
    } catch {
      return false;
    }
  }

  /** Squashfs first, metadata last: the metadata file is what makes the image whole. */
  async #placeImage(key: string, meta: ImageMetadata, squashfsTemp: string): Promise<void> {
    const files = imageFiles(this.paths, meta.configDigest);
    const metaTemp = atomicTempPath(files.metadata);
    const text = JSON.stringify(meta, null, 2) + "\n";
    let placed = false;
    try {
      await writeDurable(metaTemp, new TextEncoder().encode(text), this.#modes.file);
      this.logger.debug(`commit ${key}: metadata written`);
      await Deno.rename(squashfsTemp, files.squashfs);
      placed = true;
      this.logger.debug(`commit ${key}: squashfs in place`);
      await Deno.rename(metaTemp, files.metadata);
      await syncDir(this.paths.images);
      this.logger.debug(`commit ${key}: metadata in place`);
    } catch (err) {
      await removeQuietly(metaTemp);
      if (placed) await removeQuietly(files.squashfs);
      throw err;
    }
  }

  async #removeImageFiles(configDigest: string): Promise<void> {
    const files = imageFiles(this.paths, configDigest);
    await removeQuietly(files.metadata);
    await removeQuietly(files.squashfs);
  }

  /**
   * Under the exclusive lock: removes temp files of interrupted writes, image
   * files no entry names (an interrupted commit's, a moved tag's old image,
   * an rmi'd one), and work directories of dead pulls.
   */
  async #tidy(entries: IndexEntry[]): Promise<void> {
    const named = new Set(entries.map((e) => imageFiles(this.paths, e.configDigest).stem));
    for await (const e of Deno.readDir(this.paths.root)) {
      if (e.isFile && isAtomicTemp(e.name)) await removeQuietly(join(this.paths.root, e.name));
    }
    for await (const e of Deno.readDir(this.paths.images)) {
      const suffix = [SQUASHFS_SUFFIX, METADATA_SUFFIX].find((s) => e.name.endsWith(s));
      const stem = suffix === undefined ? undefined : e.name.slice(0, -suffix.length);
      const orphan = stem !== undefined && digestOfStem(stem) !== undefined && !named.has(stem);
      if (isAtomicTemp(e.name) || orphan) {
        this.logger.verbose(`removing ${join(this.paths.images, e.name)}: no image uses it`);
        await removeQuietly(join(this.paths.images, e.name));
      }
    }
    for (const name of await removeStaleTempDirs(this.paths.tmp)) {
      this.logger.verbose(`removed ${join(this.paths.tmp, name)}, left by a pull that died`);
    }
  }

  /** Squashfs size; the file is flushed to disk and given the repository's file mode. */
  async #flush(path: string): Promise<number> {
    const file = await Deno.open(path, { read: true });
    try {
      await file.syncData();
      await Deno.chmod(path, this.#modes.file);
      return (await file.stat()).size;
    } finally {
      file.close();
    }
  }

  async #writing<T>(fn: () => Promise<T>): Promise<T> {
    const lock = await acquireLock(this.paths.lock, {
      mode: "exclusive",
      timeoutSeconds: this.timeout,
      what: "repository lock",
      createMode: this.#modes.file,
      onWait: (holders) => this.logger.info(`waiting for the repository lock (${holders})`),
    });
    try {
      return await fn();
    } finally {
      lock.release();
    }
  }

  /** Refuses writes where this user may not write; creates the layout on first use. */
  async #prepareForWriting(): Promise<void> {
    if (this.centralized && Deno.uid() !== 0) {
      throw new ShoalError(`the centralized repository "${this.root}" is written by root only`, {
        hint: "leave out --centralized-repository to use your own repository, or ask your admin",
      });
    }
    if (this.#layoutReady) return;
    try {
      await makeDir(this.root, this.#modes.dir, true);
      for (const dir of [this.paths.images, this.paths.blobs, this.paths.tmp, this.paths.locks]) {
        await makeDir(dir, this.#modes.dir);
      }
    } catch (err) {
      throw localWriteError(this.fsError(err), this.root);
    }
    this.#layoutReady = true;
  }
}

/** Creates a directory with exactly `mode` (umask aside); an existing one is left as it is. */
async function makeDir(path: string, mode: number, recursive = false): Promise<void> {
  try {
    if ((await Deno.stat(path)).isDirectory) return;
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  try {
    await Deno.mkdir(path, { mode, recursive });
  } catch (err) {
    if (err instanceof Deno.errors.AlreadyExists) return; // another writer was first
    throw err;
  }
  await Deno.chmod(path, mode);
}
