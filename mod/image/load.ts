/**
 * `shoal load`: stores the image of a `docker save` / `podman save` /
 * OCI archive under a name the user gives, exactly as a pull would have: one
 * squashfs file with its metadata, its layer blobs in the blob cache. The
 * name is load/NAME[:TAG], as Sarus has it: no pull has such a name, so a
 * load never replaces a pulled image, and the short name still runs it.
 *
 * The archive is read once, streaming, into a work directory of the
 * repository; the image is found and verified there, converted, and only then
 * do its layers move into the blob cache and the image into the index. A
 * failure at any point leaves the repository as it was (the work directory
 * goes with the load).
 */
import { basename } from "../path.ts";
import type { LoadedConfig } from "../config/load.ts";
import { type Logger, silentLogger } from "../log.ts";
import { type ArchiveImage, findImage, verifyDiffIds } from "./archive/image.ts";
import { archiveSource, readArchive } from "./archive/read.ts";
import { ByteBudget } from "./layer.ts";
import { repositoryFor } from "./store/repository.ts";
import { DEFAULT_REGISTRY, formatReference, loadedReference, parseReference } from "./reference.ts";
import { formatPlatform, hostPlatform, parsePlatform } from "./registry/platform.ts";
import { configFields } from "./config_fields.ts";
import { buildSquashfs, siteSquashfsOptions } from "./squashfs.ts";
import { localWriteError } from "./store/write_error.ts";
import type { ImageRecord } from "./store/metadata.ts";
import type { ImageStore } from "./store/store.ts";

export type { ArchiveFormat } from "./archive/image.ts";

export interface LoadRequest {
  /** The archive; `-` reads standard input. */
  file: string;
  /** NAME[:TAG]: the image is stored as load/NAME[:TAG]. */
  name: string;
  /** `os/arch[/variant]` when the archive holds several platforms; default the host's. */
  platform?: string;
  /** Store in the site's centralized repository (root only). */
  centralized?: boolean;
}

/** What a load reports while it works, for the CLI to render. */
export type LoadEvent =
  | { kind: "reading"; source: string }
  | {
    kind: "found";
    reference: string;
    format: ArchiveImage["format"];
    compressed: boolean;
    platform: string;
    layers: { digest: string; size: number }[];
  }
  | { kind: "converting"; layers: number }
  | { kind: "committing" };

export interface LoadResult {
  image: ImageRecord;
  format: ArchiveImage["format"];
  /** The name already named this very image: nothing was converted or stored. */
  upToDate: boolean;
  /** Seconds spent reading (and verifying) the archive and converting it. */
  timings: { read: number; convert: number };
}

export interface LoadOptions {
  logger?: Logger;
  onEvent?: (event: LoadEvent) => void;
}

export async function load(
  loaded: LoadedConfig,
  request: LoadRequest,
  options: LoadOptions = {},
): Promise<LoadResult> {
  const logger = options.logger ?? silentLogger;
  const emit = options.onEvent ?? (() => {});
  const ref = loadedReference(request.name);
  // What the archive itself calls it: "tool:1" is Docker's docker.io/library/tool:1.
  const archiveName = parseReference(`${DEFAULT_REGISTRY}/${ref.repository}:${ref.tag}`);
  const wanted = request.platform === undefined ? hostPlatform() : parsePlatform(request.platform);
  const source = await archiveSource(request.file);
  const squashOptions = siteSquashfsOptions(loaded, {}, logger);
  const store = repositoryFor(loaded, request.centralized, logger);
  const maxBytes = squashOptions.maxBytes;
  const reference = formatReference(ref);

  return await store.withPullLock(ref, async () => {
    const started = performance.now();
    await using work = await store.tempDir();
    emit({ kind: "reading", source: source.label });
    const contents = await readArchive(source, work.path, { maxBytes, logger }).catch((err) => {
      throw localWriteError(err, store.root);
    });
    const image = await findImage(contents, archiveName, wanted, request.platform !== undefined);
    emit({
      kind: "found",
      reference,
      format: image.format,
      compressed: contents.compression !== "none",
      platform: formatPlatform(image.platform),
      layers: image.layers.map((l) => ({ digest: l.digest, size: l.size })),
    });
    if (request.platform === undefined && image.platform.architecture !== wanted.architecture) {
      logger.warn(
        `${reference} is an image for ${formatPlatform(image.platform)}; this machine is ${
          formatPlatform(wanted)
        }`,
      );
    }
    const stored = await store.lookup(ref);
    if (
      stored !== undefined && stored.configDigest === image.configDigest &&
      stored.digest === image.digest
    ) {
      return {
        image: stored,
        format: image.format,
        upToDate: true,
        timings: { read: (performance.now() - started) / 1000, convert: 0 },
      };
    }
    await verifyDiffIds(image, source.label, new ByteBudget(maxBytes));
    const readAt = performance.now();

    emit({ kind: "converting", layers: image.layers.length });
    const squashfs = `${work.path}/image.sqsh`;
    const built = await buildSquashfs(image.layers, squashfs, squashOptions);
    const convertedAt = performance.now();

    emit({ kind: "committing" });
    await cacheLayers(store, image);
    const record = await store.commit({
      registry: ref.registry,
      repository: ref.repository,
      tag: ref.tag,
      ...(image.digest !== undefined && { digest: image.digest }),
      ...(image.manifestDigest !== undefined && { manifestDigest: image.manifestDigest }),
      server: `file:${request.file === "-" ? "stdin" : basename(request.file)}`,
      configDigest: image.configDigest,
      platform: image.platform,
      ...configFields(image.config, built),
      layers: image.layers.map((l) => l.digest),
    }, squashfs);
    return {
      image: record,
      format: image.format,
      upToDate: false,
      timings: {
        read: (readAt - started) / 1000,
        convert: (convertedAt - readAt) / 1000,
      },
    };
  });
}

/**
 * Moves the verified layer files into the blob cache, where a later pull of
 * an image sharing them finds them; one already cached is left as it is.
 */
async function cacheLayers(store: ImageStore, image: ArchiveImage): Promise<void> {
  for (const layer of image.layers) {
    const dest = store.blobPath(layer.digest);
    const cached = await Deno.stat(dest).then((s) => s.size === layer.size, () => false);
    if (cached) continue;
    await Deno.mkdir(dest.slice(0, dest.lastIndexOf("/")), { recursive: true });
    await Deno.rename(layer.path, dest);
  }
}
