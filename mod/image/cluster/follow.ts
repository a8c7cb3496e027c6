/**
 * Layers sent to the converter while they download: each is read from the
 * blob cache's file as the download writes it (its partial file, renamed
 * into place once verified: the open descriptor reads on), up to the bytes
 * the download has reported. A publish then takes about as long as its
 * download: sending after the download added the copy through the pipe and
 * the blob's flush to disk to every publish.
 *
 * The converter checks every byte against the manifest, so nothing here is
 * trusted: the bytes are the download's, and a download that starts over (a
 * server that ignored the range of a resume) writes the same bytes again,
 * which are read once they are there again.
 */
import type { BlobProgress } from "../registry/blobs.ts";
import { blobPath, partialPath } from "../store/paths.ts";
import type { LayerFile } from "./publish.ts";

interface Blob {
  /** Whether the download has said anything of it yet: from then on its partial file exists. */
  reported: boolean;
  /** Bytes the download has written, as it last said. */
  done: number;
  complete: boolean;
  /** Called at the blob's next progress (or the download's failure). */
  waiters: (() => void)[];
}

export class DownloadFollower {
  readonly #blobs = new Map<string, Blob>();
  #failure: { err: unknown } | undefined;

  constructor(private readonly blobsDir: string) {}

  #blob(digest: string): Blob {
    let blob = this.#blobs.get(digest);
    if (blob === undefined) {
      this.#blobs.set(digest, blob = { reported: false, done: 0, complete: false, waiters: [] });
    }
    return blob;
  }

  /** Takes a download's progress report (registry/blobs.ts's onProgress). */
  progress(p: BlobProgress): void {
    const blob = this.#blob(p.digest);
    blob.reported = true;
    blob.done = p.done;
    blob.complete = p.complete;
    this.#wake(blob);
  }

  /** The download failed: whoever waits on a layer gets its error. */
  fail(err: unknown): void {
    this.#failure ??= { err };
    for (const blob of this.#blobs.values()) this.#wake(blob);
  }

  #wake(blob: Blob): void {
    for (const wake of blob.waiters.splice(0)) wake();
  }

  /** Resolves once the blob `digest` is as `until` wants it, or throws the download's failure. */
  async #waitFor(digest: string, until: (blob: Blob) => boolean): Promise<Blob> {
    const blob = this.#blob(digest);
    while (!until(blob)) {
      if (this.#failure !== undefined) throw this.#failure.err;
      await new Promise<void>((wake) => blob.waiters.push(wake));
    }
    return blob;
  }

  /** The layer `digest` of `size` bytes, to send while it downloads. */
  layer(digest: string, size: number): LayerFile {
    const path = blobPath(this.blobsDir, digest);
    return {
      size,
      open: async () => {
        // The partial exists from the download's first report on, until it becomes `path`.
        const blob = await this.#waitFor(digest, (b) => b.reported);
        if (!blob.complete) {
          try {
            return await Deno.open(partialPath(path), { read: true });
          } catch (err) {
            if (!(err instanceof Deno.errors.NotFound)) throw err;
          }
        }
        return await Deno.open(path, { read: true });
      },
      written: async (offset) =>
        (await this.#waitFor(digest, (b) => b.complete || b.done > offset)).done,
    };
  }
}
