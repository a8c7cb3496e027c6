/**
 * Streaming tar writer: ustar headers, with a PAX extended header in front
 * whenever ustar cannot hold a value (long names, large sizes or ids,
 * fractional or out-of-range mtimes, long user names, xattrs). Small pieces
 * are batched so a tree of many small files does not become one pipe write
 * per header.
 */
import { ShoalError } from "../../errors.ts";
import { BLOCK, checksum, padding, type TarHeader, typeflags } from "./header.ts";
import { concatBytes } from "../../bytes.ts";

const enc = new TextEncoder();
const BATCH = 256 * 1024;
const MAX_OCTAL_8 = 0o7777777;
const MAX_OCTAL_12 = 0o77777777777;

/**
 * Where the bytes go: a WritableStream's writer, or anything with the same
 * write. The writer reuses its buffer once `write` has resolved, so a sink
 * that keeps chunks must copy them.
 */
export interface ByteSink {
  write(chunk: Uint8Array): Promise<void>;
}

export class TarWriter {
  #batch = new Uint8Array(BATCH);
  #used = 0;

  constructor(private readonly sink: ByteSink) {}

  /**
   * Writes one entry. For "file" entries `body` must yield exactly
   * `header.size` bytes; other types carry no data.
   */
  async add(header: TarHeader, body?: AsyncIterable<Uint8Array>): Promise<void> {
    await this.#put(encodeHeader(header));
    if (header.type !== "file") return;
    let written = 0;
    if (body) {
      for await (const chunk of body) {
        written += chunk.length;
        if (written > header.size) break;
        await this.#put(chunk);
      }
    }
    if (written !== header.size) {
      throw new ShoalError(
        `tar writer: '${header.path}' has ${written} bytes of data, its header says ${header.size}`,
      );
    }
    await this.#put(new Uint8Array(padding(header.size)));
  }

  /** Writes the end-of-archive marker and flushes; the sink stays open. */
  async finish(): Promise<void> {
    await this.#put(new Uint8Array(2 * BLOCK));
    await this.flush();
  }

  async flush(): Promise<void> {
    if (this.#used === 0) return;
    const full = this.#batch.subarray(0, this.#used);
    this.#used = 0;
    await this.sink.write(full);
  }

  async #put(bytes: Uint8Array): Promise<void> {
    if (bytes.length === 0) return;
    if (this.#used + bytes.length > BATCH) await this.flush();
    if (bytes.length >= BATCH) {
      await this.sink.write(bytes);
      return;
    }
    this.#batch.set(bytes, this.#used);
    this.#used += bytes.length;
  }
}

/** The header block(s) of one entry: an optional PAX header, then the ustar header. */
export function encodeHeader(h: TarHeader): Uint8Array {
  const pax: [string, Uint8Array][] = [];
  const name = enc.encode(h.type === "directory" && !h.path.endsWith("/") ? `${h.path}/` : h.path);
  const split = splitName(name);
  if (!split) pax.push(["path", name]);
  const link = enc.encode(h.linkpath);
  if (link.length > 100) pax.push(["linkpath", link]);
  const size = h.type === "file" ? h.size : 0;
  if (size > MAX_OCTAL_12) pax.push(["size", enc.encode(String(size))]);
  for (const [key, id] of [["uid", h.uid], ["gid", h.gid]] as const) {
    if (!Number.isInteger(id) || id < 0 || id > MAX_OCTAL_8) {
      pax.push([key, enc.encode(String(id))]);
    }
  }
  const mtimeFits = Number.isInteger(h.mtime) && h.mtime >= 0 && h.mtime <= MAX_OCTAL_12;
  if (!mtimeFits) pax.push(["mtime", enc.encode(formatMtime(h.mtime))]);
  const uname = enc.encode(h.uname);
  const gname = enc.encode(h.gname);
  if (uname.length > 32) pax.push(["uname", uname]);
  if (gname.length > 32) pax.push(["gname", gname]);
  for (const [key, value] of h.xattrs) pax.push([`SCHILY.xattr.${key}`, value]);
  for (const [field, n] of [["devmajor", h.devmajor], ["devminor", h.devminor]] as const) {
    if (!Number.isInteger(n) || n < 0 || n > MAX_OCTAL_8) {
      throw new ShoalError(`tar writer: '${h.path}' has ${field} ${n}, which tar cannot hold`);
    }
  }

  const block = new Uint8Array(BLOCK);
  if (split) {
    block.set(split.name, 0);
    block.set(split.prefix, 345);
  } else {
    block.set(name.subarray(0, 100), 0);
  }
  octal(block, 100, 8, h.mode & 0o7777);
  octal(block, 108, 8, h.uid >= 0 && h.uid <= MAX_OCTAL_8 ? h.uid : 0);
  octal(block, 116, 8, h.gid >= 0 && h.gid <= MAX_OCTAL_8 ? h.gid : 0);
  octal(block, 124, 12, size <= MAX_OCTAL_12 ? size : 0);
  octal(
    block,
    136,
    12,
    mtimeFits ? h.mtime : Math.min(Math.max(Math.floor(h.mtime), 0), MAX_OCTAL_12),
  );
  block[156] = typeflags[h.type].charCodeAt(0);
  block.set(link.subarray(0, 100), 157);
  block.set(enc.encode("ustar\x0000"), 257);
  block.set(uname.subarray(0, 32), 265);
  block.set(gname.subarray(0, 32), 297);
  octal(block, 329, 8, h.devmajor);
  octal(block, 337, 8, h.devminor);
  setChecksum(block);
  if (pax.length === 0) return block;
  return concatBytes([paxHeader(pax), block]);
}

/** Fits a name into ustar's name (100) and prefix (155) fields, or returns undefined. */
function splitName(name: Uint8Array): { name: Uint8Array; prefix: Uint8Array } | undefined {
  if (name.length <= 100) return { name, prefix: new Uint8Array(0) };
  if (name.length > 256) return undefined;
  // The last '/' that leaves at most 100 bytes of name and a non-empty name.
  for (let i = name.length - 101; i < name.length - 1 && i <= 155; i++) {
    if (i > 0 && name[i] === 0x2f) {
      return { prefix: name.subarray(0, i), name: name.subarray(i + 1) };
    }
  }
  return undefined;
}

function paxHeader(records: [string, Uint8Array][]): Uint8Array {
  const body = concatBytes(records.map(([key, value]) => paxRecord(key, value)));
  const block = new Uint8Array(BLOCK);
  block.set(enc.encode("PaxHeader"), 0);
  octal(block, 100, 8, 0o644);
  octal(block, 108, 8, 0);
  octal(block, 116, 8, 0);
  octal(block, 124, 12, body.length);
  octal(block, 136, 12, 0);
  block[156] = "x".charCodeAt(0);
  block.set(enc.encode("ustar\x0000"), 257);
  setChecksum(block);
  return concatBytes([block, body, new Uint8Array(padding(body.length))]);
}

/** "LEN KEY=VALUE\n", where LEN counts the whole record including its own digits. */
function paxRecord(key: string, value: Uint8Array): Uint8Array {
  const rest = enc.encode(` ${key}=`);
  const base = rest.length + value.length + 1;
  let digits = String(base).length;
  while (String(base + digits).length !== digits) digits++;
  const len = base + digits;
  return concatBytes([enc.encode(`${len}`), rest, value, enc.encode("\n")]);
}

function formatMtime(t: number): string {
  if (Number.isInteger(t)) return String(t);
  // Nanosecond precision at most, without exponent notation.
  return t.toFixed(9).replace(/0+$/, "").replace(/\.$/, "");
}

function octal(block: Uint8Array, at: number, width: number, value: number): void {
  block.set(enc.encode(value.toString(8).padStart(width - 1, "0")), at);
  block[at + width - 1] = 0;
}

function setChecksum(block: Uint8Array): void {
  block.set(enc.encode(checksum(block).toString(8).padStart(6, "0")), 148);
  block[154] = 0;
  block[155] = 0x20;
}
