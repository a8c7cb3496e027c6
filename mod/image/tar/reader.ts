/**
 * Streaming tar reader over a Web ReadableStream. It pulls from the source
 * only as fast as the consumer reads entry data, and holds at most one source
 * chunk plus small metadata (PAX headers and GNU long names are capped), so a
 * layer of any size passes through in bounded memory.
 *
 * Formats: ustar, PAX extended and global headers (path, linkpath, size, uid,
 * gid, mtime with fractions, uname, gname, SCHILY.xattr.*), GNU long name and
 * long link ('L'/'K'), GNU base-256 numbers. Sparse files and other GNU
 * extensions are refused. Every error names the archive (`label`) and the
 * offset of the entry's first header in the uncompressed stream.
 */
import { ShoalError } from "../../errors.ts";
import {
  BLOCK,
  checksum,
  padding,
  signedChecksum,
  type TarEntryType,
  type TarHeader,
} from "./header.ts";

/** Largest PAX header or GNU long name accepted; real ones are a few KiB at most. */
const MAX_META = 1024 * 1024;

export interface TarEntry {
  header: TarHeader;
  /** Position of the entry in the archive, counting from 0. */
  index: number;
  /** Offset of its first header block (PAX or long-name headers included). */
  offset: number;
  /**
   * The entry's data, streamed from the source. Read it before asking for the
   * next entry, or leave it: unread data is skipped.
   */
  body(): AsyncIterable<Uint8Array>;
}

const dec = new TextDecoder("utf-8", { fatal: true });

const types: Record<string, TarEntryType> = {
  "0": "file",
  "\0": "file",
  "7": "file",
  "1": "hardlink",
  "2": "symlink",
  "3": "chardev",
  "4": "blockdev",
  "5": "directory",
  "6": "fifo",
};

/** Reads entries from `stream`; `label` names the archive in errors ("layer sha256:..."). */
export async function* readTar(
  stream: ReadableStream<Uint8Array>,
  label: string,
): AsyncGenerator<TarEntry> {
  const src = new Source(stream.getReader());
  const globals = new Map<string, Uint8Array>();
  let index = 0;
  try {
    for (;;) {
      let local = new Map<string, Uint8Array>();
      let longName: Uint8Array | undefined;
      let longLink: Uint8Array | undefined;
      const offset = src.offset;
      const fail = (what: string, at = offset): never => {
        throw new ShoalError(`${label}: ${what} (entry at offset ${at})`);
      };
      let block: Uint8Array | undefined;
      let flag: string;
      let size: number;
      // Metadata headers apply to the next real entry.
      for (;;) {
        const at = src.offset;
        block = await src.readBlock(fail);
        const meta = at !== offset;
        if (meta && (!block || block.every((b) => b === 0))) fail("truncated archive");
        if (!block) return;
        if (block.every((b) => b === 0)) {
          // Read what follows the end marker (record padding) so that a
          // decompressor still reports a bad checksum or a truncated stream.
          await src.drain();
          return;
        }
        let stored = NaN;
        try {
          stored = parseNumber(block, 148, 8, fail, "checksum");
        } catch { /* unreadable: a mismatch like any other */ }
        if (stored !== checksum(block) && stored !== signedChecksum(block)) {
          fail(
            at === 0
              ? "not a tar archive (bad header checksum)"
              : "corrupt tar header (bad checksum)",
            at,
          );
        }
        flag = String.fromCharCode(block[156]!);
        size = parseNumber(block, 124, 12, fail, "size");
        if (flag === "x" || flag === "g" || flag === "L" || flag === "K") {
          if (size > MAX_META) fail(`oversized '${flag}' header of ${size} bytes`);
          const data = await src.readExact(size + padding(size), fail);
          const content = data.subarray(0, size);
          if (flag === "x") local = new Map([...local, ...parsePax(content, fail)]);
          else if (flag === "g") {
            for (const [k, v] of parsePax(content, fail)) globals.set(k, v);
          } else if (flag === "L") longName = cString(content);
          else longLink = cString(content);
          continue;
        }
        break;
      }
      const pax = new Map([...globals, ...local]);
      for (const key of pax.keys()) {
        if (key.startsWith("GNU.sparse.")) fail("GNU sparse files are not supported");
      }
      const type = types[flag];
      if (type === undefined) {
        fail(
          flag === "S"
            ? "GNU sparse files are not supported"
            : `unsupported tar entry type '${printable(flag)}'`,
        );
      }
      const gnu = text(block.subarray(257, 265)) === "ustar  \0";
      const ustar = text(block.subarray(257, 263)) === "ustar\0";
      let nameBytes = longName ?? cString(block.subarray(0, 100));
      if (!longName && ustar && block[345] !== 0) {
        nameBytes = join(cString(block.subarray(345, 500)), nameBytes);
      }
      const paxPath = pax.get("path");
      const path = utf8(paxPath ?? nameBytes, fail, "entry name");
      const paxLink = pax.get("linkpath");
      const linkpath = utf8(paxLink ?? longLink ?? cString(block.subarray(157, 257)), fail, "link");
      let entryType: TarEntryType = type!;
      // Old (pre-POSIX) archives mark directories only by a trailing slash.
      if (entryType === "file" && flag !== "7" && path.endsWith("/")) entryType = "directory";
      const paxSize = pax.get("size");
      if (paxSize) size = paxInt(paxSize, "size", fail);
      const dataSize = entryType === "file" ? size : 0;
      if (!Number.isSafeInteger(size)) fail(`absurd entry size ${size}`);
      const xattrs = new Map<string, Uint8Array>();
      for (const [key, value] of pax) {
        if (key.startsWith("SCHILY.xattr.")) xattrs.set(key.slice(13), value);
      }
      const header: TarHeader = {
        path,
        type: entryType,
        mode: parseNumber(block, 100, 8, fail, "mode") & 0o7777,
        uid: pax.has("uid")
          ? paxInt(pax.get("uid")!, "uid", fail)
          : parseNumber(block, 108, 8, fail, "uid"),
        gid: pax.has("gid")
          ? paxInt(pax.get("gid")!, "gid", fail)
          : parseNumber(block, 116, 8, fail, "gid"),
        size: dataSize,
        mtime: pax.has("mtime")
          ? paxTime(pax.get("mtime")!, fail)
          : parseNumber(block, 136, 12, fail, "mtime"),
        linkpath,
        devmajor: ustar || gnu ? parseNumber(block, 329, 8, fail, "devmajor") : 0,
        devminor: ustar || gnu ? parseNumber(block, 337, 8, fail, "devminor") : 0,
        uname: lenientText(pax.get("uname") ?? cString(block.subarray(265, 297))),
        gname: lenientText(pax.get("gname") ?? cString(block.subarray(297, 329))),
        xattrs,
      };
      if (header.uid > 0xffffffff || header.gid > 0xffffffff) fail("uid or gid out of range");
      let remaining = dataSize;
      const name = path;
      yield {
        header,
        index: index++,
        offset,
        body: async function* () {
          while (remaining > 0) {
            const chunk = await src.readSome(
              remaining,
              (what) => fail(`${what} in the data of '${name}'`),
            );
            remaining -= chunk.length;
            yield chunk;
          }
        },
      };
      await src.skip(remaining + padding(dataSize), (what) => fail(`${what} in '${name}'`));
    }
  } finally {
    await src.release();
  }
}

/** A pull-based byte reader over a stream reader; `offset` counts bytes consumed. */
class Source {
  offset = 0;
  #chunk: Uint8Array = new Uint8Array(0);
  #done = false;

  constructor(private readonly reader: ReadableStreamDefaultReader<Uint8Array>) {}

  async #fill(): Promise<boolean> {
    while (this.#chunk.length === 0) {
      if (this.#done) return false;
      const { value, done } = await this.reader.read();
      if (done) {
        this.#done = true;
        return false;
      }
      this.#chunk = value;
    }
    return true;
  }

  /** One header block, or undefined at a clean end of input. */
  async readBlock(fail: (what: string) => never): Promise<Uint8Array | undefined> {
    if (!(await this.#fill())) return undefined;
    return await this.readExact(BLOCK, fail);
  }

  async readExact(n: number, fail: (what: string) => never): Promise<Uint8Array> {
    if (this.#chunk.length >= n) return this.#take(n);
    const out = new Uint8Array(n);
    let at = 0;
    while (at < n) {
      if (!(await this.#fill())) fail("truncated archive");
      const part = this.#take(Math.min(n - at, this.#chunk.length));
      out.set(part, at);
      at += part.length;
    }
    return out;
  }

  async readSome(max: number, fail: (what: string) => never): Promise<Uint8Array> {
    if (!(await this.#fill())) fail("truncated archive");
    return this.#take(Math.min(max, this.#chunk.length));
  }

  async drain(): Promise<void> {
    while (await this.#fill()) this.#take(this.#chunk.length);
  }

  async skip(n: number, fail: (what: string) => never): Promise<void> {
    while (n > 0) n -= (await this.readSome(n, fail)).length;
  }

  #take(n: number): Uint8Array {
    const part = this.#chunk.subarray(0, n);
    this.#chunk = this.#chunk.subarray(n);
    this.offset += n;
    return part;
  }

  async release(): Promise<void> {
    if (!this.#done) await this.reader.cancel().catch(() => {});
    this.reader.releaseLock();
  }
}

/** An octal number field, or a GNU base-256 one (high bit set). */
function parseNumber(
  block: Uint8Array,
  at: number,
  width: number,
  fail: (what: string) => never,
  field: string,
): number {
  const bytes = block.subarray(at, at + width);
  if (bytes[0]! & 0x80) {
    if (bytes[0] === 0xff) fail(`negative ${field} in tar header`);
    let n = bytes[0]! & 0x7f;
    for (let i = 1; i < width; i++) n = n * 256 + bytes[i]!;
    if (!Number.isSafeInteger(n)) fail(`absurd ${field} in tar header`);
    return n;
  }
  let i = 0;
  while (i < width && (bytes[i] === 0x20 || bytes[i] === 0)) i++;
  let n = 0;
  for (; i < width; i++) {
    const b = bytes[i]!;
    if (b === 0 || b === 0x20) break;
    if (b < 0x30 || b > 0x37) fail(`corrupt tar header (bad ${field} field)`);
    n = n * 8 + (b - 0x30);
  }
  return n;
}

/** PAX records "LEN KEY=VALUE\n"; values stay bytes (xattrs are binary). */
function parsePax(data: Uint8Array, fail: (what: string) => never): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>();
  let at = 0;
  while (at < data.length) {
    if (data[at] === 0) break;
    const space = data.indexOf(0x20, at);
    if (space < 0) fail("corrupt PAX header");
    const len = Number(text(data.subarray(at, space)));
    const end = at + len;
    if (!Number.isSafeInteger(len) || len <= space - at || end > data.length) {
      fail("corrupt PAX header (bad record length)");
    }
    if (data[end - 1] !== 0x0a) fail("corrupt PAX header (record not terminated)");
    const record = data.subarray(space + 1, end - 1);
    const eq = record.indexOf(0x3d);
    if (eq <= 0) fail("corrupt PAX header (record without key)");
    out.set(utf8(record.subarray(0, eq), fail, "PAX key"), record.slice(eq + 1));
    at = end;
  }
  return out;
}

function paxInt(value: Uint8Array, key: string, fail: (what: string) => never): number {
  const s = text(value);
  if (!/^[0-9]{1,16}$/.test(s) || !Number.isSafeInteger(Number(s))) {
    fail(`bad PAX ${key} '${printable(s)}'`);
  }
  return Number(s);
}

function paxTime(value: Uint8Array, fail: (what: string) => never): number {
  const s = text(value);
  if (!/^-?[0-9]{1,12}(\.[0-9]*)?$/.test(s)) fail(`bad PAX mtime '${printable(s)}'`);
  return Number(s);
}

function cString(bytes: Uint8Array): Uint8Array {
  const nul = bytes.indexOf(0);
  return nul < 0 ? bytes : bytes.subarray(0, nul);
}

function join(prefix: Uint8Array, name: Uint8Array): Uint8Array {
  const out = new Uint8Array(prefix.length + 1 + name.length);
  out.set(prefix, 0);
  out[prefix.length] = 0x2f;
  out.set(name, prefix.length + 1);
  return out;
}

function utf8(bytes: Uint8Array, fail: (what: string) => never, what: string): string {
  let s = "";
  try {
    s = dec.decode(bytes);
  } catch {
    fail(`${what} is not valid UTF-8`);
  }
  if (s.includes("\0")) fail(`${what} contains a NUL byte`);
  return s;
}

function text(bytes: Uint8Array): string {
  return String.fromCharCode(...bytes);
}

function lenientText(bytes: Uint8Array): string {
  return new TextDecoder().decode(bytes);
}

function printable(s: string): string {
  return s.replace(/[^\x20-\x7e]/g, "?").slice(0, 40);
}
