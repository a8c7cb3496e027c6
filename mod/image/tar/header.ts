/**
 * The tar entry model shared by the streaming reader and writer: one logical
 * entry after PAX extended headers and GNU long names have been applied.
 */

export const BLOCK = 512;

export type TarEntryType =
  | "file"
  | "hardlink"
  | "symlink"
  | "chardev"
  | "blockdev"
  | "directory"
  | "fifo";

export interface TarHeader {
  /** The name exactly as the archive gives it (not normalized). */
  path: string;
  type: TarEntryType;
  /** Permission bits including setuid, setgid and sticky (0o7777). */
  mode: number;
  uid: number;
  gid: number;
  /** Bytes of data that follow; always 0 for types other than "file". */
  size: number;
  /** Seconds since the epoch; PAX may give a fraction or a negative value. */
  mtime: number;
  /** Symlink target, or the path a hardlink refers to. */
  linkpath: string;
  devmajor: number;
  devminor: number;
  uname: string;
  gname: string;
  /** Extended attributes (`SCHILY.xattr.NAME`); values are raw bytes. */
  xattrs: Map<string, Uint8Array>;
}

/** Typeflag byte of each entry type as written. */
export const typeflags: Record<TarEntryType, string> = {
  file: "0",
  hardlink: "1",
  symlink: "2",
  chardev: "3",
  blockdev: "4",
  directory: "5",
  fifo: "6",
};

/** A header with defaults for everything but path and type. */
export function makeHeader(
  fields: Partial<TarHeader> & Pick<TarHeader, "path" | "type">,
): TarHeader {
  return {
    mode: fields.type === "directory" ? 0o755 : fields.type === "symlink" ? 0o777 : 0o644,
    uid: 0,
    gid: 0,
    size: 0,
    mtime: 0,
    linkpath: "",
    devmajor: 0,
    devminor: 0,
    uname: "",
    gname: "",
    xattrs: new Map(),
    ...fields,
  };
}

/** Header checksum: sum of all bytes with the checksum field counted as spaces. */
export function checksum(block: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : block[i]!;
  return sum;
}

/** The same sum over signed bytes, which some historic writers used. */
export function signedChecksum(block: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : block[i]!;
    sum += b > 127 ? b - 256 : b;
  }
  return sum;
}

/** Bytes of padding after `size` bytes of data. */
export function padding(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}
