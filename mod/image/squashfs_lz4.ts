/**
 * A repair of lz4 images written by tar2sqfs 1.2 (squashfs-tools-ng, Debian
 * 12): it marks a metadata block "compressed" even when lz4 made it larger,
 * which small tables always are (one id, 4 bytes, becomes 5). The kernel and
 * squashfuse read such blocks, but unsquashfs 4.5 refuses the whole image
 * ("read_id_table: failed to read id table block ... File system corruption
 * detected"), and admins inspect images with it.
 *
 * The tables unsquashfs reads with a known size (ids, fragments, exports,
 * xattr ids) are rewritten where that happened: such a block is decompressed
 * and stored as an uncompressed block in the same place, which it fits since
 * it is smaller. Everything else stays byte for byte; readers find blocks
 * through the index, so the byte left over between blocks is never read.
 */

const SUPERBLOCK_SIZE = 96;
const LZ4 = 5;
const METADATA_SIZE = 8192;
const UNCOMPRESSED = 0x8000;
const NONE = 0xffffffffffffffffn;

/** A table: where its index of block pointers is, and its length in bytes. */
interface Table {
  index: bigint;
  bytes: number;
}

/**
 * Rewrites the metadata blocks of `path` described above when the image is
 * lz4-compressed; returns how many it rewrote. Throws on a file that is not
 * such an image or whose tables point outside it. The caller syncs the file.
 */
export function storeLz4ExpansionsRaw(path: string): number {
  using file = Deno.openSync(path, { read: true, write: true });
  const size = file.statSync().size;
  const read = (at: bigint | number, length: number): Uint8Array => {
    const start = Number(at);
    if (start < 0 || length < 0 || start + length > size) {
      throw new Error(`${path}: a squashfs table points outside the file`);
    }
    const buf = new Uint8Array(length);
    file.seekSync(start, Deno.SeekMode.Start);
    for (let done = 0; done < length;) {
      const n = file.readSync(buf.subarray(done));
      if (n === null) throw new Error(`${path}: cut short`);
      done += n;
    }
    return buf;
  };
  const sb = new DataView(read(0, SUPERBLOCK_SIZE).buffer);
  if (sb.getUint32(0, true) !== 0x73717368) throw new Error(`${path}: not a squashfs image`);
  if (sb.getUint16(20, true) !== LZ4) return 0;

  const tables: Table[] = [
    { index: sb.getBigUint64(48, true), bytes: sb.getUint16(26, true) * 4 },
    { index: sb.getBigUint64(80, true), bytes: sb.getUint32(16, true) * 16 },
    { index: sb.getBigUint64(88, true), bytes: sb.getUint32(4, true) * 8 },
  ];
  const xattrIds = sb.getBigUint64(56, true);
  if (xattrIds !== NONE) {
    // The xattr id table's header: the key/value table's start, the id count, unused.
    const header = new DataView(read(xattrIds, 16).buffer);
    tables.push({ index: xattrIds + 16n, bytes: header.getUint32(8, true) * 16 });
  }

  let rewritten = 0;
  for (const table of tables) {
    if (table.index === NONE || table.bytes === 0) continue;
    const blocks = Math.ceil(table.bytes / METADATA_SIZE);
    const index = new DataView(read(table.index, blocks * 8).buffer);
    for (let i = 0; i < blocks; i++) {
      const at = index.getBigUint64(i * 8, true);
      const expected = i + 1 < blocks ? METADATA_SIZE : table.bytes - i * METADATA_SIZE;
      const header = new DataView(read(at, 2).buffer).getUint16(0, true);
      const stored = header & ~UNCOMPRESSED;
      if ((header & UNCOMPRESSED) !== 0 || stored < expected) continue;
      const raw = lz4Decompress(read(at + 2n, stored), expected);
      const block = new Uint8Array(2 + raw.length);
      new DataView(block.buffer).setUint16(0, raw.length | UNCOMPRESSED, true);
      block.set(raw, 2);
      file.seekSync(Number(at), Deno.SeekMode.Start);
      for (let done = 0; done < block.length;) done += file.writeSync(block.subarray(done));
      rewritten++;
    }
  }
  return rewritten;
}

/** Decodes one raw lz4 block (no frame) that must come to exactly `size` bytes. */
export function lz4Decompress(src: Uint8Array, size: number): Uint8Array {
  const out = new Uint8Array(size);
  let i = 0;
  let o = 0;
  const bad = () => new Error("damaged lz4 block");
  const length = (base: number) => {
    let n = base;
    if (base === 15) {
      for (let b = 255; b === 255; n += b) {
        if (i >= src.length) throw bad();
        b = src[i++]!;
      }
    }
    return n;
  };
  while (i < src.length) {
    const token = src[i++]!;
    const literals = length(token >> 4);
    if (i + literals > src.length || o + literals > size) throw bad();
    out.set(src.subarray(i, i + literals), o);
    i += literals;
    o += literals;
    if (i === src.length) break; // the last sequence has literals only
    if (i + 2 > src.length) throw bad();
    const offset = src[i]! | (src[i + 1]! << 8);
    i += 2;
    const match = length(token & 15) + 4;
    if (offset === 0 || offset > o || o + match > size) throw bad();
    // Byte by byte: a match may overlap what it copies.
    for (let k = 0; k < match; k++, o++) out[o] = out[o - offset]!;
  }
  if (o !== size) throw bad();
  return out;
}
