/**
 * Opening a layer blob on disk as a stream of uncompressed tar bytes: the
 * compression is told by the blob's magic bytes (media types are not always
 * truthful, e.g. in `docker save` archives), the media type only has to be a
 * layer type at all. A shared budget bounds the uncompressed bytes of all
 * layers together, which stops decompression bombs.
 */
import { createReadStream } from "node:fs";
import { open } from "node:fs/promises";
import { pipeline, type Readable } from "node:stream";
import { createGunzip, createZstdDecompress } from "node:zlib";
import { ShoalError } from "../errors.ts";

/** A layer blob as stored: the file, its digest, and its media type from the manifest. */
export interface LayerBlob {
  path: string;
  digest: string;
  mediaType: string;
}

export type LayerCompression = "gzip" | "zstd" | "none";

/** Uncompressed bytes still allowed, shared by all layers of one image. */
export class ByteBudget {
  used = 0;
  constructor(readonly limit: number) {}
}

/** "layer sha256:0123456789ab", the name layers get in messages. */
export function layerLabel(layer: LayerBlob): string {
  const [algo, hex] = layer.digest.split(":");
  return `layer ${hex ? `${algo}:${hex.slice(0, 12)}` : layer.digest}`;
}

const layerMediaType =
  /^application\/vnd\.(oci\.image\.layer(\.nondistributable)?\.v1\.tar(\+gzip|\+zstd)?|docker\.image\.rootfs\.(foreign\.)?diff\.tar(\.gzip|\.zstd)?)$/;

/** Opens a layer for reading; throws when it is not a layer or cannot be read. */
export async function openLayer(
  layer: LayerBlob,
  budget?: ByteBudget,
): Promise<{ stream: ReadableStream<Uint8Array>; compression: LayerCompression }> {
  const label = layerLabel(layer);
  // Docker archives and some tools leave the media type empty: magic decides.
  if (layer.mediaType !== "" && !layerMediaType.test(layer.mediaType)) {
    throw new ShoalError(`${label}: unsupported layer media type '${layer.mediaType}'`);
  }
  const compression = await sniff(layer.path, label);
  const file = createReadStream(layer.path, { highWaterMark: 256 * 1024 });
  let source: Readable = file;
  if (compression !== "none") {
    // Large output chunks: fewer buffers to allocate and collect per layer.
    const chunkSize = 256 * 1024;
    const inflate = compression === "gzip"
      ? createGunzip({ chunkSize })
      : createZstdDecompress({ chunkSize });
    // pipeline closes the file when the decompressor is destroyed, and the reverse.
    source = pipeline(file, inflate, () => {});
  }
  return { stream: toWebStream(source, label, compression, budget), compression };
}

/**
 * A pull-driven Web stream over the node stream, counting bytes against the
 * budget and turning decompressor and file errors into one-line ShoalErrors.
 * (Deno's Readable.toWeb keeps enqueueing after a cancel, so it is not used.)
 */
function toWebStream(
  source: Readable,
  label: string,
  compression: LayerCompression,
  budget: ByteBudget | undefined,
): ReadableStream<Uint8Array> {
  const chunks = source[Symbol.asyncIterator]() as AsyncIterator<Uint8Array>;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      let next: IteratorResult<Uint8Array>;
      try {
        next = await chunks.next();
      } catch (err) {
        const what = compression === "none" ? "cannot read layer" : `corrupt ${compression} data`;
        throw new ShoalError(`${label}: ${what}: ${(err as Error).message}`, { cause: err });
      }
      if (next.done) return controller.close();
      if (budget) {
        budget.used += next.value.length;
        if (budget.used > budget.limit) {
          source.destroy();
          throw new ShoalError(
            `${label}: the image expands to more than ${formatBytes(budget.limit)} uncompressed`,
            { hint: "raise pull.maxImageGiB in the site configuration if the image is genuine" },
          );
        }
      }
      controller.enqueue(next.value);
    },
    cancel() {
      source.destroy();
    },
  }, { highWaterMark: 0 });
}

async function sniff(path: string, label: string): Promise<LayerCompression> {
  const magic = new Uint8Array(4);
  let fh;
  try {
    fh = await open(path, "r");
    await fh.read(magic, 0, 4, 0);
  } catch (err) {
    throw new ShoalError(`${label}: cannot read ${path}: ${(err as Error).message}`, {
      cause: err,
    });
  } finally {
    await fh?.close();
  }
  if (magic[0] === 0x1f && magic[1] === 0x8b) return "gzip";
  if (magic[0] === 0x28 && magic[1] === 0xb5 && magic[2] === 0x2f && magic[3] === 0xfd) {
    return "zstd";
  }
  return "none";
}

function formatBytes(n: number): string {
  const gib = n / 2 ** 30;
  if (gib >= 1) return `${Number(gib.toFixed(2))} GiB`;
  return `${Number((n / 2 ** 20).toFixed(2))} MiB`;
}
