/**
 * Blob downloads into a content-addressed cache (`<dir>/<alg>/<hex>`): each
 * blob is hashed while it streams into `<file>.partial`, a partial left by an
 * interrupted pull is resumed with an HTTP Range request (its bytes rehashed
 * first, so the digest covers the whole blob), and only a verified blob is
 * renamed into place. An exclusive lock on the partial file lets concurrent
 * pulls of the same blob (two `shoal pull` at once) wait for each other
 * instead of writing the same file.
 */
import { join } from "../../path.ts";
import type { Hash } from "node:crypto";
import { ShoalError } from "../../errors.ts";
import { blobPath, partialPath } from "../store/paths.ts";
import { localWriteError } from "../store/write_error.ts";
import { parseDigest } from "./digest.ts";
import { hasherFor } from "./hash.ts";
import type { Descriptor } from "./manifest.ts";
import { networkError, RegistryError } from "./responses.ts";
import { type RetryPolicy, withRetries } from "./retry.ts";

export interface BlobSource {
  /** For messages: the registry host or URL. */
  name: string;
  /** The mirror/registry the image came from; its error is the one reported when all fail. */
  primary: boolean;
  /** GETs the blob, from `offset` on when it is not 0; throws RegistryError on failure. */
  open(blob: Descriptor, offset: number): Promise<Response>;
}

export interface BlobProgress {
  digest: string;
  /** Bytes present so far, including a resumed partial. */
  done: number;
  total: number;
  complete: boolean;
  /** Already in the cache: nothing was downloaded. */
  cached: boolean;
}

export interface DownloadOptions {
  cacheDir: string;
  retry: RetryPolicy;
  onProgress?: (p: BlobProgress) => void;
  onRetry?: (message: string) => void;
  /** Stops reading (keeping the partial for a later resume) when aborted. */
  signal?: AbortSignal;
}

async function sizeOf(path: string): Promise<number | undefined> {
  try {
    return (await Deno.stat(path)).size;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
}

/** A cached blob of the right size is trusted: it was verified before it got its name. */
async function isCached(path: string, size: number): Promise<boolean> {
  const have = await sizeOf(path);
  if (have === size) return true;
  if (have !== undefined) await Deno.remove(path).catch(() => {});
  return false;
}

async function writeAll(file: Deno.FsFile, data: Uint8Array): Promise<void> {
  for (let off = 0; off < data.length;) off += await file.write(data.subarray(off));
}

async function rehash(file: Deno.FsFile, length: number, hash: Hash): Promise<void> {
  await file.seek(0, Deno.SeekMode.Start);
  const buf = new Uint8Array(1 << 20);
  for (let left = length; left > 0;) {
    const n = await file.read(buf.subarray(0, Math.min(buf.length, left)));
    if (n === null) break;
    hash.update(buf.subarray(0, n));
    left -= n;
  }
}

function mismatch(blob: Descriptor, source: string, detail: string): ShoalError {
  return new ShoalError(
    `blob ${blob.digest} from ${source} failed verification (${detail}); the partial download was deleted`,
    { hint: "pull again; if it persists, the registry or a proxy serves corrupted data" },
  );
}

/** The start offset of a 206 response, from `Content-Range: bytes START-END/TOTAL`. */
function rangeStart(res: Response): number | undefined {
  const m = /^bytes (\d+)-\d+\/(\d+|\*)$/.exec(res.headers.get("content-range")?.trim() ?? "");
  return m ? Number(m[1]) : undefined;
}

/** One attempt at one source: resume or start, stream, verify, rename into place. */
async function attempt(
  blob: Descriptor,
  source: BlobSource,
  path: string,
  options: DownloadOptions,
): Promise<void> {
  const partial = partialPath(path);
  const file = await Deno.open(partial, { read: true, write: true, create: true, mode: 0o644 })
    .catch((err) => {
      throw localWriteError(err, partial);
    });
  try {
    await file.lock(true);
    // Someone else finished it while we waited for the lock.
    if (await isCached(path, blob.size)) return;
    const hash = hasherFor(blob.digest);
    let offset = (await file.stat()).size;
    if (offset > blob.size) {
      await file.truncate(0);
      offset = 0;
    }
    if (offset > 0) await rehash(file, offset, hash);
    let fresh = hash;
    if (offset < blob.size || blob.size === 0) {
      const res = await source.open(blob, offset);
      if (offset > 0 && res.status === 206 && rangeStart(res) !== offset) {
        await res.body?.cancel();
        await file.truncate(0);
        throw new RegistryError(
          `blob ${blob.digest}: ${source.name} answered a different range than asked`,
          206,
          true,
        );
      }
      if (offset > 0 && res.status !== 206) {
        // The server ignored the Range header and sends the whole blob.
        await file.truncate(0);
        offset = 0;
        fresh = hasherFor(blob.digest);
      }
      await file.seek(offset, Deno.SeekMode.Start);
      let done = offset;
      const progress = () =>
        options.onProgress?.({
          digest: blob.digest,
          done,
          total: blob.size,
          complete: false,
          cached: false,
        });
      progress();
      if (res.body !== null) {
        try {
          for await (const chunk of res.body) {
            if (options.signal?.aborted) throw new DOMException("download stopped", "AbortError");
            done += chunk.length;
            if (done > blob.size) {
              await res.body.cancel().catch(() => {});
              throw mismatch(
                blob,
                source.name,
                `more than the ${blob.size} bytes its descriptor says`,
              );
            }
            fresh.update(chunk);
            // A write that fails is this machine's problem, not the registry's: no retry.
            await writeAll(file, chunk).catch((err) => {
              throw localWriteError(err, partial);
            });
            progress();
          }
        } catch (err) {
          if (err instanceof ShoalError || options.signal?.aborted) throw err;
          throw networkError(err, `blob ${blob.digest}`, source.name);
        }
      }
      if (done < blob.size) {
        throw new RegistryError(
          `blob ${blob.digest}: ${source.name} ended the transfer after ${done} of ${blob.size} bytes`,
          undefined,
          true,
        );
      }
    }
    const got = `${parseDigest(blob.digest).algorithm}:${fresh.digest("hex")}`;
    if (got !== blob.digest) throw mismatch(blob, source.name, `its content hashes to ${got}`);
    await file.syncData();
    await Deno.rename(partial, path);
  } catch (caught) {
    const err = localWriteError(caught, partial);
    // A partial is kept only for what a resume can fix: a registry or network failure, or a stop.
    if (err instanceof ShoalError && !(err instanceof RegistryError) && !options.signal?.aborted) {
      await Deno.remove(partial).catch(() => {});
    }
    throw err;
  } finally {
    file.close();
  }
}

/**
 * Puts one blob into the cache and returns its path. Transient failures are
 * retried (resuming) per source; a source that still fails hands over to the
 * next one (mirror -> registry -> foreign URLs). A digest mismatch ends it.
 */
export async function downloadBlob(
  blob: Descriptor,
  sources: BlobSource[],
  options: DownloadOptions,
): Promise<string> {
  const path = blobPath(options.cacheDir, blob.digest);
  const progressDone = (cached: boolean) =>
    options.onProgress?.({
      digest: blob.digest,
      done: blob.size,
      total: blob.size,
      complete: true,
      cached,
    });
  if (await isCached(path, blob.size)) {
    progressDone(true);
    return path;
  }
  await Deno.mkdir(join(path, ".."), { recursive: true }).catch((err) => {
    throw localWriteError(err, join(path, ".."));
  });
  const failures: { source: BlobSource; err: unknown }[] = [];
  for (const source of sources) {
    try {
      await withRetries(
        options.retry,
        () => attempt(blob, source, path, options),
        (err, n, delay) =>
          options.onRetry?.(
            `${(err as Error).message}; retry ${n} of ${options.retry.retries} in ${delay} ms`,
          ),
      );
      progressDone(false);
      return path;
    } catch (err) {
      if (!(err instanceof RegistryError)) throw err;
      failures.push({ source, err });
    }
  }
  const primary = failures.find((f) => f.source.primary) ?? failures[failures.length - 1];
  throw primary?.err ?? new ShoalError(`blob ${blob.digest}: no source to download it from`);
}

/**
 * Runs `fn` over `items` with at most `limit` at once. After the first
 * failure no new item starts; the ones running are aborted through the
 * signal, and the first error is thrown once they have settled.
 */
export async function mapBounded<T, R>(
  items: T[],
  limit: number,
  fn: (item: T, signal: AbortSignal) => Promise<R>,
  outer?: AbortSignal,
): Promise<R[]> {
  const controller = new AbortController();
  const onOuter = () => controller.abort(outer?.reason);
  outer?.addEventListener("abort", onOuter);
  const results: R[] = new Array(items.length);
  let next = 0;
  let failure: { err: unknown } | undefined;
  const worker = async () => {
    while (failure === undefined && !controller.signal.aborted && next < items.length) {
      const i = next++;
      try {
        results[i] = await fn(items[i]!, controller.signal);
      } catch (err) {
        failure ??= { err };
        controller.abort(err);
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  } finally {
    outer?.removeEventListener("abort", onOuter);
  }
  if (failure !== undefined) throw failure.err;
  if (outer?.aborted) throw outer.reason;
  return results;
}
