/**
 * Building an image's squashfs file: the flattened layers are streamed into
 * tar2sqfs (squashfs-tools-ng), which keeps uid/gid/mode/xattrs as the tar
 * says, so no root and no unpacked tree are needed. The result is written to
 * a temporary file next to `dest`, synced and renamed into place; on any
 * failure the temporary file is removed and nothing else is left.
 */
import { basename, dirname, join } from "../path.ts";
import { randomHex } from "../bytes.ts";
import type { compressions } from "../config/choices.ts";
import type { LoadedConfig } from "../config/load.ts";
import { ShoalError } from "../errors.ts";
import { imageGlibc } from "./glibc.ts";
import type { Logger } from "../log.ts";
import { flattenLayers, type FlattenResult } from "./flatten.ts";
import type { LayerBlob } from "./layer.ts";
import { storeLz4ExpansionsRaw } from "./squashfs_lz4.ts";

export type Compression = typeof compressions[number];

export interface SquashfsOptions {
  /** The tar2sqfs executable (config runtime.tar2sqfs, else found on PATH). */
  tar2sqfs: string;
  compression: Compression;
  /** Compressor level; ignored for lz4, which has none. Default: 3 for zstd, else tar2sqfs's. */
  level?: number;
  blockSizeKiB: number;
  /** Largest uncompressed size of the image (pull.maxImageGiB). */
  maxBytes: number;
  /** Compressor threads; default: the number of CPUs. */
  jobs?: number;
  logger?: Logger;
}

/** Per-image choices a user may make on the command line, over the site's defaults. */
export interface CompressionChoice {
  compression?: Compression;
  level?: number;
}

/**
 * The conversion options for this site: tar2sqfs as resolved from the config,
 * the site's squashfs settings, and the size limit; a compressor chosen on the
 * command line brings its own level (or its default), not the site's.
 */
export function siteSquashfsOptions(
  loaded: Pick<LoadedConfig, "paths" | "config">,
  choice: CompressionChoice = {},
  logger?: Logger,
): SquashfsOptions {
  const tar2sqfs = loaded.paths.tar2sqfs;
  if (tar2sqfs === undefined) {
    throw new ShoalError("tar2sqfs is not installed", {
      hint: "install squashfs-tools-ng, or set runtime.tar2sqfs in the site config",
    });
  }
  const site = loaded.config.squashfs;
  return {
    tar2sqfs,
    compression: choice.compression ?? site.compression,
    level: choice.level ?? (choice.compression ? undefined : site.level),
    blockSizeKiB: site.blockSizeKiB,
    maxBytes: loaded.config.pull.maxImageGiB * 2 ** 30,
    logger,
  };
}

export interface SquashfsResult extends FlattenResult {
  /** Size of the squashfs file in bytes. */
  size: number;
  /** The newest GLIBC_x.y the image's libc.so.6 defines (image/glibc.ts). */
  glibc?: string;
}

/** Level ranges of the compressors, as `tar2sqfs -c NAME -X help` gives them. */
const levelRange: Partial<Record<Compression, [number, number]>> = {
  zstd: [1, 22],
  gzip: [1, 9],
  xz: [0, 9],
  lzma: [0, 9],
  lzo: [1, 9],
};

/** zstd at level 3 is 20x faster than tar2sqfs's default level 15 for 8% more size. */
const DEFAULT_ZSTD_LEVEL = 3;

/** The tar2sqfs options that select compressor, level, block size and threads. */
function tar2sqfsArgs(options: SquashfsOptions): string[] {
  const { compression, blockSizeKiB } = options;
  const args = ["--quiet", "--no-skip", "--compressor", compression];
  const range = levelRange[compression];
  const level = options.level ?? (compression === "zstd" ? DEFAULT_ZSTD_LEVEL : undefined);
  if (range && level !== undefined) {
    if (!Number.isInteger(level) || level < range[0] || level > range[1]) {
      throw new ShoalError(
        `compression level ${level} is out of range for ${compression} (${range[0]} to ${
          range[1]
        })`,
        { hint: "set squashfs.level in the site configuration to a valid level" },
      );
    }
    args.push("--comp-extra", `level=${level}`);
  }
  if (![4, 8, 16, 32, 64, 128, 256, 512, 1024].includes(blockSizeKiB)) {
    throw new ShoalError(`squashfs block size ${blockSizeKiB} KiB is not a power of two 4-1024`);
  }
  const jobs = options.jobs ?? navigator.hardwareConcurrency;
  args.push("--block-size", String(blockSizeKiB * 1024), "--num-jobs", String(jobs));
  // Directories no layer describes are root-owned 0755, as Docker creates them.
  args.push("--defaults", "uid=0,gid=0,mode=0755,mtime=0");
  return args;
}

/**
 * Converts `layers` (bottom first, as in the manifest) into the squashfs
 * file `dest`, atomically. Throws a ShoalError naming the layer and entry for
 * bad input, or carrying tar2sqfs's own message when it fails (disk full...).
 */
export async function buildSquashfs(
  layers: LayerBlob[],
  dest: string,
  options: SquashfsOptions,
): Promise<SquashfsResult> {
  const args = tar2sqfsArgs(options);
  const dir = dirname(dest);
  const tmp = join(dir, `.${basename(dest)}.${randomHex(6)}.tmp`);
  options.logger?.debug(`${options.tar2sqfs} ${args.join(" ")} ${tmp}`);
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(options.tar2sqfs, {
      args: [...args, tmp],
      stdin: "piped",
      stdout: "null",
      stderr: "piped",
      env: { LC_ALL: "C" },
    }).spawn();
  } catch (err) {
    throw new ShoalError(`cannot run ${options.tar2sqfs}: ${(err as Error).message}`, {
      hint: "install squashfs-tools-ng or set runtime.tar2sqfs in the site configuration",
      cause: err,
    });
  }
  const stderr = collectTail(child.stderr);
  try {
    const stdin = child.stdin.getWriter();
    let flattened: FlattenResult;
    try {
      flattened = await flattenLayers(layers, { write: (c) => stdin.write(c) }, {
        maxBytes: options.maxBytes,
        logger: options.logger,
      });
      await stdin.close();
    } catch (err) {
      await stdin.abort(err).catch(() => {});
      // Bad input is ours to report; a broken pipe means tar2sqfs failed first.
      if (err instanceof ShoalError) {
        try {
          child.kill("SIGKILL");
        } catch { /* already gone */ }
        await child.status;
        await stderr;
        throw err;
      }
      await failure(child, await stderr, dir, err);
      throw err;
    }
    await failure(child, await stderr, dir);
    if (options.compression === "lz4") storeLz4ExpansionsRaw(tmp);
    await syncAndRename(tmp, dest);
    const { size } = await Deno.stat(dest);
    options.logger?.verbose(`wrote ${dest}: ${flattened.entries} entries, ${size} bytes`);
    // Kept with the image so that runs given host libraries compare without reading it.
    const glibc = await imageGlibc(dest).catch(() => undefined);
    return { ...flattened, size, ...(glibc !== undefined && { glibc }) };
  } catch (err) {
    await Deno.remove(tmp).catch(() => {});
    throw err;
  }
}

/** Throws tar2sqfs's own message when it exited non-zero. */
async function failure(
  child: Deno.ChildProcess,
  stderr: string,
  dir: string,
  cause?: unknown,
): Promise<void> {
  const status = await child.status;
  if (status.success) {
    if (cause !== undefined) {
      throw new ShoalError(`writing to tar2sqfs failed: ${(cause as Error).message}`, { cause });
    }
    return;
  }
  const lines = stderr.split("\n").map((l) => l.trim()).filter((l) => l !== "");
  const message = lines.at(-1) ?? `exit status ${status.code}`;
  const full = lines.slice(-3).join("; ");
  // tar2sqfs reports a full disk or an exceeded quota as a plain "I/O error".
  const hint = /No space left|quota|I\/O error/i.test(full)
    ? `check free space and quota in ${dir}`
    : undefined;
  throw new ShoalError(`tar2sqfs failed: ${full || message}`, { hint, cause });
}

async function syncAndRename(tmp: string, dest: string): Promise<void> {
  try {
    using file = await Deno.open(tmp, { read: true });
    await file.sync();
    await Deno.rename(tmp, dest);
  } catch (err) {
    throw new ShoalError(`cannot write ${dest}: ${(err as Error).message}`, { cause: err });
  }
  // Makes the rename durable; some network filesystems cannot sync a directory.
  try {
    using parent = await Deno.open(dirname(dest), { read: true });
    await parent.sync();
  } catch { /* best effort */ }
}

/** Reads a stream to its end, keeping the last 16 KiB of text. */
export async function collectTail(stream: ReadableStream<Uint8Array>): Promise<string> {
  const decoder = new TextDecoder();
  let text = "";
  for await (const chunk of stream) {
    text = (text + decoder.decode(chunk, { stream: true })).slice(-16384);
  }
  return text + decoder.decode();
}
