/**
 * A small tar (ustar + PAX) writer for test layers. Hand-made headers, because
 * the tests need entries no well-behaved tool writes: absolute paths, `..`,
 * devices owned by arbitrary uids, headers that lie about their size. Paths
 * are written exactly as given (only directories get a trailing '/').
 */
import { concatBytes } from "../../mod/bytes.ts";

interface EntryMeta {
  path: string;
  /** Permission bits plus setuid/setgid/sticky (default 0644; dirs 0755, symlinks 0777). */
  mode?: number;
  uid?: number;
  gid?: number;
  uname?: string;
  gname?: string;
  /** Seconds since the epoch; a fixed default keeps layer digests reproducible. */
  mtime?: number;
  /** Extended attributes, written as PAX `SCHILY.xattr.NAME` records. */
  xattrs?: Record<string, string>;
  /** Extra raw PAX records. */
  pax?: Record<string, string>;
}

export type TarEntry =
  | EntryMeta & {
    type: "file";
    content?: Uint8Array | string;
    /** Size claimed by the header; set it to lie (hostile or truncated archives). */
    headerSize?: number;
  }
  | EntryMeta & { type: "dir" }
  | EntryMeta & { type: "symlink" | "hardlink"; target: string }
  | EntryMeta & { type: "char" | "block"; major: number; minor: number }
  | EntryMeta & { type: "fifo" };

/** mtime of every entry that does not set one: 2023-11-14, so digests do not change per run. */
export const DEFAULT_MTIME = 1_700_000_000;

const TYPEFLAG = {
  file: "0",
  hardlink: "1",
  symlink: "2",
  char: "3",
  block: "4",
  dir: "5",
  fifo: "6",
} as const;

const BLOCK = 512;
const encoder = new TextEncoder();

/** A whiteout: deletes `path` from the layers below (OCI image-spec layer.md). */
export function whiteout(path: string): TarEntry {
  const slash = path.lastIndexOf("/");
  return { type: "file", path: `${path.slice(0, slash + 1)}.wh.${path.slice(slash + 1)}` };
}

/** An opaque-directory marker: hides everything below `dir` from lower layers. */
export function opaqueWhiteout(dir: string): TarEntry {
  return { type: "file", path: `${dir.replace(/\/$/, "")}/.wh..wh..opq` };
}

function bytesOf(content: Uint8Array | string | undefined): Uint8Array {
  if (content === undefined) return new Uint8Array();
  return typeof content === "string" ? encoder.encode(content) : content;
}

/** One PAX record: "LEN key=value\n", where LEN counts its own digits. */
function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  const bodyLen = encoder.encode(body).length;
  let digits = String(bodyLen).length;
  if (String(bodyLen + digits).length > digits) digits++;
  return `${bodyLen + digits}${body}`;
}

/** Writes `value` as a NUL-terminated octal field; false if it does not fit. */
function putOctal(header: Uint8Array, offset: number, width: number, value: number): boolean {
  const text = Math.trunc(value).toString(8);
  if (value < 0 || text.length > width - 1) return false;
  header.set(encoder.encode(text.padStart(width - 1, "0") + "\0"), offset);
  return true;
}

/** Writes a string field; false if it does not fit (the caller then uses PAX). */
function putString(header: Uint8Array, offset: number, width: number, value: string): boolean {
  const bytes = encoder.encode(value);
  header.set(bytes.subarray(0, width), offset);
  return bytes.length <= width;
}

function header(
  name: string,
  typeflag: string,
  fields: {
    mode: number;
    uid: number;
    gid: number;
    size: number;
    mtime: number;
    linkname?: string;
    uname?: string;
    gname?: string;
    major?: number;
    minor?: number;
  },
  pax: Record<string, string>,
): Uint8Array {
  const h = new Uint8Array(BLOCK);
  if (!putString(h, 0, 100, name)) pax.path ??= name;
  putOctal(h, 100, 8, fields.mode & 0o7777);
  // Numbers too large for their octal field go to PAX, with 0 in the header.
  const numeric = (offset: number, width: number, value: number, key: string) => {
    if (putOctal(h, offset, width, value)) return;
    pax[key] ??= String(value);
    putOctal(h, offset, width, 0);
  };
  numeric(108, 8, fields.uid, "uid");
  numeric(116, 8, fields.gid, "gid");
  numeric(124, 12, fields.size, "size");
  numeric(136, 12, fields.mtime, "mtime");
  h[156] = typeflag.charCodeAt(0);
  if (fields.linkname !== undefined && !putString(h, 157, 100, fields.linkname)) {
    pax.linkpath ??= fields.linkname;
  }
  h.set(encoder.encode("ustar\0" + "00"), 257);
  putString(h, 265, 32, fields.uname ?? "");
  putString(h, 297, 32, fields.gname ?? "");
  putOctal(h, 329, 8, fields.major ?? 0);
  putOctal(h, 337, 8, fields.minor ?? 0);
  // The checksum is computed with its own field read as spaces.
  h.fill(0x20, 148, 156);
  const sum = h.reduce((a, b) => a + b, 0);
  h.set(encoder.encode(sum.toString(8).padStart(6, "0") + "\0 "), 148);
  return h;
}

function padded(data: Uint8Array): Uint8Array[] {
  const rest = data.length % BLOCK;
  return rest === 0 ? [data] : [data, new Uint8Array(BLOCK - rest)];
}

/** The blocks of one entry: an optional PAX header, the ustar header, the data. */
function entryBlocks(entry: TarEntry): Uint8Array[] {
  const isDir = entry.type === "dir";
  const name = isDir && !entry.path.endsWith("/") ? `${entry.path}/` : entry.path;
  const data = entry.type === "file" ? bytesOf(entry.content) : new Uint8Array();
  const size = entry.type === "file" ? entry.headerSize ?? data.length : 0;
  const pax: Record<string, string> = { ...entry.pax };
  for (const [k, v] of Object.entries(entry.xattrs ?? {})) pax[`SCHILY.xattr.${k}`] = v;
  const main = header(name, TYPEFLAG[entry.type], {
    mode: entry.mode ?? (isDir ? 0o755 : entry.type === "symlink" ? 0o777 : 0o644),
    uid: entry.uid ?? 0,
    gid: entry.gid ?? 0,
    size,
    mtime: entry.mtime ?? DEFAULT_MTIME,
    linkname: "target" in entry ? entry.target : undefined,
    uname: entry.uname,
    gname: entry.gname,
    major: "major" in entry ? entry.major : undefined,
    minor: "minor" in entry ? entry.minor : undefined,
  }, pax);
  const blocks: Uint8Array[] = [];
  const records = Object.entries(pax).map(([k, v]) => paxRecord(k, v)).join("");
  if (records !== "") {
    const body = encoder.encode(records);
    const paxName = `PaxHeaders/${name.replace(/\/$/, "").split("/").pop()?.slice(0, 80) ?? ""}`;
    blocks.push(
      header(paxName, "x", { mode: 0o644, uid: 0, gid: 0, size: body.length, mtime: 0 }, {}),
      ...padded(body),
    );
  }
  blocks.push(main, ...padded(data));
  return blocks;
}

/** A complete tar archive (with the two zero blocks that end it) of `entries` in order. */
export function tarArchive(entries: TarEntry[]): Uint8Array {
  const blocks = entries.flatMap(entryBlocks);
  blocks.push(new Uint8Array(2 * BLOCK));
  return concatBytes(blocks);
}
