/**
 * `shoal pull`: resolve a reference at its registry, download what the store
 * does not have, convert the layers into one squashfs image, and commit it.
 * A second pull of an image that has not changed costs one HEAD request.
 */
import type { LoadedConfig } from "../config/load.ts";
import { UsageError } from "../errors.ts";
import { type Logger, silentLogger } from "../log.ts";
import {
  formatReference,
  type ImageReference,
  parseRemoteReference,
  registryApiHost,
} from "./reference.ts";
import { createRegistryClient, type ResolvedImage } from "./registry/client.ts";
import type { BlobProgress } from "./registry/blobs.ts";
import { createCredentialProvider, type CredentialProvider } from "./registry/credentials.ts";
import {
  formatPlatform,
  hostPlatform,
  parsePlatform,
  type Platform,
  platformMatches,
} from "./registry/platform.ts";
import { configFields } from "./config_fields.ts";
import { buildSquashfs, type Compression, siteSquashfsOptions } from "./squashfs.ts";
import type { ImageStore } from "./store/store.ts";
import { repositoryFor } from "./store/repository.ts";
import { LocalWriteError } from "./store/write_error.ts";
import type { ImageRecord } from "./store/metadata.ts";
import { storedImageAdmitted, verifyPulledImage } from "./signature/verify.ts";
import { exists } from "../sys/fs.ts";
import { IMAGE_FILE, imageDir } from "./cluster/layout.ts";
import type { DownloadFollower } from "./cluster/follow.ts";
import { join } from "../path.ts";

export interface PullRequest {
  reference: string;
  /** `os/arch[/variant]`; default the host's. */
  platform?: string;
  /** false: unverified HTTPS, then plain HTTP (`--tls-verify=false`). */
  tlsVerify?: boolean;
  /** Store in the site's centralized repository (root only). */
  centralized?: boolean;
  compression?: Compression;
  compressionLevel?: number;
  /** Credentials for this pull only (`--username`, `--password-stdin`). */
  username?: string;
  password?: string;
}

/** What a pull reports while it works, for the CLI to render. */
export type PullEvent =
  | { kind: "resolved"; reference: string; digest: string; platform: string; layers: LayerInfo[] }
  | { kind: "layer"; progress: BlobProgress }
  | { kind: "converting"; layers: number }
  | { kind: "committing" };

export interface LayerInfo {
  digest: string;
  size: number;
}

export interface PullResult {
  image: ImageRecord;
  /** Nothing was downloaded or converted: the store already had this image. */
  upToDate: boolean;
  /** Published into the cluster store: converted by this pull, or found there already. */
  cluster?: "converted" | "found";
  /** Layer bytes fetched from the network in this pull. */
  downloadedBytes: number;
  /** Seconds spent resolving, downloading and converting. */
  timings: { resolve: number; download: number; convert: number };
}

export interface PullOptions {
  logger?: Logger;
  onEvent?: (event: PullEvent) => void;
  /** Replaces the user's credential files (tests, library use). */
  credentials?: CredentialProvider;
  signal?: AbortSignal;
}

export async function pull(
  loaded: LoadedConfig,
  request: PullRequest,
  options: PullOptions = {},
): Promise<PullResult> {
  const logger = options.logger ?? silentLogger;
  const emit = options.onEvent ?? (() => {});
  const ref = parseRemoteReference(request.reference);
  const platform = request.platform === undefined ? undefined : parsePlatform(request.platform);
  if ((request.username === undefined) !== (request.password === undefined)) {
    throw new UsageError("give both --username and --password-stdin, or neither");
  }
  const squashOptions = siteSquashfsOptions(loaded, {
    compression: request.compression,
    level: request.compressionLevel,
  }, logger);
  const store = repositoryFor(loaded, request.centralized, logger);
  using client = createRegistryClient({
    config: loaded.config,
    logger,
    tlsVerify: request.tlsVerify,
    credentials: credentialsFor(request, ref, options.credentials, logger),
  });

  const started = performance.now();
  // Cheap check first: a HEAD gives the digest the tag points at now.
  const current = await upToDate(store, client, ref, platform);
  if (current && await storedImageAdmitted(loaded, current)) {
    return {
      image: current,
      upToDate: true,
      downloadedBytes: 0,
      timings: { resolve: seconds(started), download: 0, convert: 0 },
    };
  }

  return await store.withPullLock(ref, async () => {
    const resolved = await client.resolveManifest(ref, platform ? { platform } : {});
    const resolvedAt = performance.now();
    // Another pull may have stored it while this one waited for the lock.
    const stored = await store.lookup(ref);
    // Checked before any layer is downloaded: an image the site refuses costs no transfer.
    const verified = await verifyPulledImage(loaded, client, resolved, logger);
    const signature = verified?.record;
    /** Where the image came from: what the repository's index records for the reference. */
    const origin = {
      registry: ref.registry,
      repository: ref.repository,
      ...(ref.tag !== undefined && { tag: ref.tag }),
      digest: resolved.digest,
      ...(resolved.manifestDigest !== resolved.digest && {
        manifestDigest: resolved.manifestDigest,
      }),
      server: resolved.source,
      configDigest: resolved.configDigest,
      ...(signature !== undefined && { signature }),
    };
    if (stored && sameImage(stored, resolved) && await storedImageAdmitted(loaded, stored)) {
      return {
        image: stored,
        upToDate: true,
        downloadedBytes: 0,
        timings: { resolve: seconds(started), download: 0, convert: 0 },
      };
    }
    emit({
      kind: "resolved",
      reference: formatReference(ref),
      digest: resolved.digest,
      platform: formatPlatform(resolved.platform),
      layers: resolved.layers.map((l) => ({ digest: l.digest, size: l.size })),
    });

    let downloadedBytes = 0;
    const startedAt = new Map<string, number>();
    /** Blobs this pull put in the cache (not found there). */
    const fetched: string[] = [];
    /** Follows the download for a publish, which sends the layers as they come. */
    let follower: DownloadFollower | undefined;
    const download = (signal = options.signal) =>
      client.fetchBlobs(resolved, {
        cacheDir: store.blobsDir,
        signal,
        onProgress: (p) => {
          follower?.progress(p);
          if (!startedAt.has(p.digest)) startedAt.set(p.digest, p.cached ? p.total : p.done);
          if (p.complete && !p.cached) {
            downloadedBytes += p.total - (startedAt.get(p.digest) ?? 0);
            fetched.push(p.digest);
          }
          emit({ kind: "layer", progress: p });
        },
      }).catch(async (err) => {
        if (err instanceof LocalWriteError) {
          // No resume can fix a full disk: give back what this pull wrote.
          await store.dropPartials(resolved.layers.map((l) => l.digest)).catch(() => {});
          await store.dropBlobs(fetched).catch(() => {});
        }
        throw err;
      });

    if (store.cluster !== undefined) {
      // Published into the site's cluster store: converted there once, by its owner.
      const { publishImage } = await import("./cluster/publish.ts");
      const { referStoreImage } = await import("./cluster/refs.ts");
      const { DownloadFollower } = await import("./cluster/follow.ts");
      let downloadedAt = resolvedAt;
      let downloaded: Promise<unknown> | undefined;
      // A publish that fails while the layers download stops the download (a partial is kept).
      const stop = new AbortController();
      try {
        // An image the store has costs no converter: the helper records the reference itself.
        const found = exists(join(imageDir(store.cluster, resolved.manifestDigest), IMAGE_FILE));
        if (found) await referStoreImage(loaded, resolved.manifestDigest);
        const outcome = found ? { outcome: "exists" as const } : await publishImage([
          loaded.paths.helper,
          "publish",
          resolved.manifestDigest,
        ], {
          registry: ref.registry,
          repository: ref.repository,
          digest: resolved.manifestDigest,
          ...(resolved.indexBytes !== undefined && { indexBytes: resolved.indexBytes }),
          manifestBytes: resolved.manifestBytes,
          configBytes: resolved.configBytes,
          signatures: verified?.signed ?? [],
          layers: () => {
            const following = follower = new DownloadFollower(store.blobsDir);
            const signals = options.signal === undefined ? [] : [options.signal];
            downloaded = download(AbortSignal.any([stop.signal, ...signals])).then((paths) => {
              downloadedAt = performance.now();
              emit({ kind: "converting", layers: paths.length });
            }, (err) => following.fail(err));
            return Promise.resolve(resolved.layers.map((l) => following.layer(l.digest, l.size)));
          },
        }, logger);
        await downloaded;
        emit({ kind: "committing" });
        const image = await store.commitClusterReference(origin);
        return {
          image,
          upToDate: false,
          cluster: outcome.outcome === "exists" ? "found" : "converted",
          downloadedBytes,
          timings: {
            resolve: (resolvedAt - started) / 1000,
            download: (downloadedAt - resolvedAt) / 1000,
            convert: (performance.now() - downloadedAt) / 1000,
          },
        };
      } finally {
        stop.abort();
        await downloaded;
        // The store has the image now (or the publish failed): the user's copies only take space.
        await store.dropBlobs(fetched).catch(() => {});
      }
    }

    const paths = await download();
    const downloadedAt = performance.now();

    try {
      return await convertAndCommit(paths);
    } catch (err) {
      // A failed pull leaves no blob of its own behind (rmi could not remove it).
      await store.dropBlobs(fetched).catch(() => {});
      throw err;
    }

    async function convertAndCommit(paths: string[]): Promise<PullResult> {
      emit({ kind: "converting", layers: paths.length });
      await using work = await store.tempDir();
      const squashfs = `${work.path}/image.sqsh`;
      const built = await buildSquashfs(
        resolved.layers.map((l, i) => ({
          path: paths[i]!,
          digest: l.digest,
          mediaType: l.mediaType,
        })),
        squashfs,
        squashOptions,
      );
      const convertedAt = performance.now();

      emit({ kind: "committing" });
      const image = await store.commit({
        ...origin,
        platform: resolved.platform,
        ...configFields(resolved.config, built),
        layers: resolved.layers.map((l) => l.digest),
      }, squashfs);
      return {
        image,
        upToDate: false,
        downloadedBytes,
        timings: {
          resolve: (resolvedAt - started) / 1000,
          download: (downloadedAt - resolvedAt) / 1000,
          convert: (convertedAt - downloadedAt) / 1000,
        },
      };
    }
  });
}

function seconds(since: number): number {
  return (performance.now() - since) / 1000;
}

/** The stored image when the registry still names the same one for this platform. */
async function upToDate(
  store: ImageStore,
  client: { headDigest(ref: ImageReference): Promise<string | undefined> },
  ref: ImageReference,
  platform: Platform | undefined,
): Promise<ImageRecord | undefined> {
  const stored = await store.lookup(ref);
  if (!stored || !platformMatches(stored.platform, platform ?? hostPlatform())) return undefined;
  // A digest reference names content that cannot change.
  if (ref.digest !== undefined && ref.tag === undefined) return stored;
  const digest = await client.headDigest(ref).catch(() => undefined);
  return digest !== undefined && digest === stored.digest ? stored : undefined;
}

function sameImage(stored: ImageRecord, resolved: ResolvedImage): boolean {
  return stored.digest === resolved.digest && stored.configDigest === resolved.configDigest;
}

/** `--username`/`--password-stdin` take precedence for the image's own registry. */
function credentialsFor(
  request: PullRequest,
  ref: ImageReference,
  given: CredentialProvider | undefined,
  logger: Logger,
): CredentialProvider {
  const base = given ?? createCredentialProvider({ logger });
  const { username, password } = request;
  if (username === undefined || password === undefined) return base;
  return {
    get: (registry, repository) =>
      registry === ref.registry || registry === registryApiHost(ref.registry)
        ? Promise.resolve({ kind: "basic", username, password })
        : base.get(registry, repository),
  };
}
