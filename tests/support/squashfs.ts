/**
 * Helpers for the conversion tests: layers written with the production tar
 * writer (plus hand-made hostile bytes), and squashfs images inspected with
 * the real squashfs tools (`unsquashfs -lln`, `rdsquashfs`).
 */
import { createHash } from "node:crypto";
import { gzipSync, zstdCompressSync } from "node:zlib";
import type { LayerBlob } from "../../mod/image/layer.ts";
import { makeHeader, type TarEntryType, type TarHeader } from "../../mod/image/tar/header.ts";
import { TarWriter } from "../../mod/image/tar/writer.ts";
import type { SquashfsOptions } from "../../mod/image/squashfs.ts";
import { runCommand } from "./shoal.ts";
import { concatBytes as concat } from "../../mod/bytes.ts";

export const TAR2SQFS = "/usr/bin/tar2sqfs";

export function squashOptions(extra: Partial<SquashfsOptions> = {}): SquashfsOptions {
  return {
    tar2sqfs: TAR2SQFS,
    compression: "zstd",
    blockSizeKiB: 128,
    maxBytes: 2 ** 30,
    ...extra,
  };
}

export type LayerEntry = Partial<TarHeader> & {
  path: string;
  type?: TarEntryType;
  content?: string | Uint8Array;
};

/** Tar bytes of `entries`, written by the production writer. */
export async function tarOf(entries: LayerEntry[]): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  const writer = new TarWriter({ write: (c) => Promise.resolve(void chunks.push(c.slice())) });
  for (const { content, ...fields } of entries) {
    const data = typeof content === "string" ? new TextEncoder().encode(content) : content;
    const header = makeHeader({ type: "file", size: data?.length ?? 0, ...fields });
    await writer.add(header, data ? once(data) : undefined);
  }
  await writer.finish();
  return concat(chunks);
}

async function* once(data: Uint8Array): AsyncIterable<Uint8Array> {
  yield data;
}

export { concat };

const mediaTypes = {
  gzip: "application/vnd.oci.image.layer.v1.tar+gzip",
  zstd: "application/vnd.oci.image.layer.v1.tar+zstd",
  none: "application/vnd.oci.image.layer.v1.tar",
} as const;

/** Writes a layer blob (entries, or raw tar bytes) into `dir`, compressed as asked. */
export async function writeLayer(
  dir: string,
  content: LayerEntry[] | Uint8Array,
  compression: keyof typeof mediaTypes = "gzip",
): Promise<LayerBlob> {
  const tar = content instanceof Uint8Array ? content : await tarOf(content);
  const blob = compression === "gzip"
    ? gzipSync(tar)
    : compression === "zstd"
    ? zstdCompressSync(tar)
    : tar;
  const hex = createHash("sha256").update(blob).digest("hex");
  const path = `${dir}/${hex}`;
  await Deno.writeFile(path, blob);
  return { path, digest: `sha256:${hex}`, mediaType: mediaTypes[compression] };
}

export interface Listed {
  mode: string;
  uid: number;
  gid: number;
  /** Size, or "major, minor" for devices. */
  size: string;
  link?: string;
}

/** `unsquashfs -lln`: path (relative, "" for the root) -> listing. */
export async function listImage(image: string): Promise<Map<string, Listed>> {
  const r = await runCommand("unsquashfs", ["-lln", "-UTC", image]);
  if (r.code !== 0) throw new Error(`unsquashfs -lln failed: ${r.stderr}`);
  const out = new Map<string, Listed>();
  for (const line of r.stdout.split("\n")) {
    const m = line.match(
      /^(\S{10}) (\d+)\/(\d+) +(\d+|\d+, +\d+) \S+ \S+ squashfs-root(?:\/(.*?))?(?: -> (.*))?$/,
    );
    if (!m) continue;
    const [, mode, uid, gid, size, path, link] = m;
    const listed: Listed = { mode: mode!, uid: Number(uid), gid: Number(gid), size: size! };
    if (link !== undefined) listed.link = link;
    out.set(path ?? "", listed);
  }
  return out;
}

/** `rdsquashfs -s`: inode number, link count and exact mtime of a path. */
export async function inode(
  image: string,
  path: string,
): Promise<{ inode: number; links: number; mtime: number }> {
  const r = await runCommand("rdsquashfs", ["-s", `/${path}`, image]);
  if (r.code !== 0) throw new Error(`rdsquashfs -s ${path} failed: ${r.stderr}`);
  const field = (re: RegExp) => Number(r.stdout.match(re)?.[1] ?? NaN);
  return {
    inode: field(/^Inode number: (\d+)/m),
    links: field(/^Hard link count: (\d+)/m),
    mtime: field(/^Last modified: .*\((\d+)\)/m),
  };
}

export async function cat(image: string, path: string): Promise<string> {
  const r = await runCommand("rdsquashfs", ["-c", `/${path}`, image]);
  if (r.code !== 0) throw new Error(`rdsquashfs -c ${path} failed: ${r.stderr}`);
  return r.stdout;
}

/** `rdsquashfs -x`: the "name=value" lines of a path's xattrs. */
export async function xattrsOf(image: string, path: string): Promise<string[]> {
  const r = await runCommand("rdsquashfs", ["-x", `/${path}`, image]);
  if (r.code !== 0) throw new Error(`rdsquashfs -x ${path} failed: ${r.stderr}`);
  return r.stdout.split("\n").filter((l) => l !== "").sort();
}

/** Names in a directory, to show nothing was left behind. */
export async function dirNames(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  return names.sort();
}
