/**
 * Reading a repository: image lookups and listings under the shared lock.
 * Apart from the writing side (store.ts: commits, removal, gc, pull locks),
 * which `shoal run` never needs and would otherwise load on every start.
 */
import { compareStrings } from "../../compare.ts";
import type { LoadedConfig } from "../../config/load.ts";
import { ShoalError } from "../../errors.ts";
import { type Logger, silentLogger } from "../../log.ts";
import type { ImageReference } from "../reference.ts";
import { clusterRecord, readIndex, resolveRecords } from "./catalog.ts";
import { acquireLock, type FileLock } from "./lock.ts";
import { type ImageRecord, type IndexEntry, referenceKey } from "./metadata.ts";
import { type RepositoryPaths, repositoryPaths } from "./paths.ts";
import { matchingReferences, parseQuery, selectEntries } from "./query.ts";
import { type ClusterPaths, clusterPaths } from "../cluster/layout.ts";

export interface StoreOptions {
  /** The site's centralized repository: written by root only, readable by everyone. */
  centralized?: boolean;
  /** How long to wait for the repository lock (config `locks.timeoutSeconds`). Default 60. */
  lockTimeoutSeconds?: number;
  /** How long a pull waits for another pull of the same image. Default 3600. */
  pullLockTimeoutSeconds?: number;
  /** The site's other repository, where "no image" looks for a hint (see notFound). */
  otherRoot?: string;
  /** The site's cluster store, where the images of entries marked `cluster` are. */
  cluster?: ClusterPaths;
  logger?: Logger;
}

/** Where a command's repository is: the user's own, or the site's centralized one. */
export function repositoryLocation(
  loaded: LoadedConfig,
  centralized: boolean | undefined,
): { root: string; options: StoreOptions } {
  const lockTimeoutSeconds = loaded.config.locks.timeoutSeconds;
  const own = loaded.paths.localRepository;
  const site = loaded.paths.centralizedRepository;
  if (!centralized) {
    const store = loaded.config.store;
    return {
      root: own,
      options: {
        lockTimeoutSeconds,
        otherRoot: site,
        ...(store !== undefined && { cluster: clusterPaths(store.path) }),
      },
    };
  }
  if (site === undefined) {
    throw new ShoalError("this site has no centralized repository", {
      hint: `an admin sets repositories.centralized in ${loaded.layout.configFile}`,
    });
  }
  return { root: site, options: { centralized: true, lockTimeoutSeconds, otherRoot: own } };
}

/** The repository a command reads (see repositoryLocation). */
export function readerFor(
  loaded: LoadedConfig,
  centralized: boolean | undefined,
  logger: Logger = silentLogger,
): StoreReader {
  const { root, options } = repositoryLocation(loaded, centralized);
  return new StoreReader(root, { ...options, logger });
}

export class StoreReader {
  readonly root: string;
  readonly centralized: boolean;
  readonly paths: RepositoryPaths;
  protected readonly logger: Logger;
  protected readonly timeout: number;
  readonly #otherRoot: string | undefined;
  readonly cluster: ClusterPaths | undefined;

  constructor(root: string, options: StoreOptions = {}) {
    this.cluster = options.cluster;
    this.root = root;
    this.centralized = options.centralized ?? false;
    this.paths = repositoryPaths(root);
    this.logger = options.logger ?? silentLogger;
    this.timeout = options.lockTimeoutSeconds ?? 60;
    this.#otherRoot = options.otherRoot;
  }

  /** Every usable image, one per reference, sorted by reference. */
  async list(): Promise<ImageRecord[]> {
    return await this.reading(() => {
      const records = this.resolve(readIndex(this.paths, this.logger));
      return records.sort((a, b) => compareStrings(a.reference, b.reference));
    });
  }

  /**
   * The image a reference (tag, digest, tag@digest) or IMAGE ID names, or
   * undefined; an image whose files are damaged or gone counts as absent.
   */
  async lookup(query: string | ImageReference): Promise<ImageRecord | undefined> {
    const q = parseQuery(query);
    const found = await this.reading(() => {
      const { entries } = selectEntries(readIndex(this.paths, this.logger), q);
      return this.resolve(entries)[0];
    });
    // A job pins its image by digest: the cluster store has it whether or not this user pulled it.
    const digest = q.ref?.digest;
    if (found !== undefined || digest === undefined || this.cluster === undefined) return found;
    return clusterRecord(this.cluster, { ...q.ref!, digest });
  }

  /**
   * The error for an image that is not here, for `rmi` and `run`. When the
   * other repository has it, the hint says so and how to use it: each command
   * works on the repository its flag names, so that `images`, `run` and `rmi`
   * always mean the same images, and a user's own pull never silently changes
   * which image a job that names the site's runs.
   */
  notFound(text: string): ShoalError {
    const where = this.centralized ? "the centralized repository" : "your repository";
    const elsewhere = this.#elsewhere(text);
    const shown = elsewhere.slice(0, 3).join(", ") + (elsewhere.length > 3 ? ", ..." : "");
    let hint = `\`shoal images${this.centralized ? " --centralized-repository" : ""}\` lists them`;
    if (elsewhere.length > 0) {
      hint = this.centralized
        ? `your own repository has ${shown}: leave out --centralized-repository`
        : `the site's centralized repository has ${shown}: add --centralized-repository`;
    }
    return new ShoalError(`no image "${text}" in ${where} "${this.root}"`, { hint });
  }

  /**
   * What the other repository has of that name, read without its lock: the
   * index is replaced whole by rename, and this only words a hint. Anything
   * unreadable there gives no hint rather than another error.
   */
  #elsewhere(text: string): string[] {
    if (this.#otherRoot === undefined) return [];
    try {
      const entries = readIndex(repositoryPaths(this.#otherRoot), silentLogger);
      return matchingReferences(entries, parseQuery(text));
    } catch {
      return [];
    }
  }

  protected resolve(entries: IndexEntry[]): ImageRecord[] {
    return resolveRecords(this.paths, entries, (entry, why) => {
      const key = referenceKey(entry);
      this.logger.warn(
        `skipping image ${key}: ${why} (\`shoal rmi ${key}\` removes it, \`shoal pull\` fetches it again)`,
      );
    }, this.cluster);
  }

  /**
   * Runs `fn` under a shared lock. A repository nobody wrote yet has no lock
   * file and nothing to protect; it reads as empty.
   */
  protected async reading<T>(fn: () => T): Promise<T> {
    let lock: FileLock | undefined;
    try {
      lock = await acquireLock(this.paths.lock, {
        mode: "shared",
        timeoutSeconds: this.timeout,
        what: "repository lock",
        onWait: (holders) => this.logger.verbose(`waiting for the repository lock (${holders})`),
      });
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw this.fsError(err);
    }
    try {
      return fn();
    } catch (err) {
      throw this.fsError(err);
    } finally {
      lock?.release();
    }
  }

  /** Permission problems as one line naming the repository; other errors unchanged. */
  protected fsError(err: unknown): unknown {
    if (!(err instanceof Deno.errors.PermissionDenied)) return err;
    return new ShoalError(`cannot use the image repository "${this.root}": ${err.message}`, {
      hint: this.centralized
        ? "ask your admin to make the centralized repository readable (dirs 0755, files 0644)"
        : "check the owner and permissions of your repository directory",
      cause: err,
    });
  }
}
