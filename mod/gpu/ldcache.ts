/**
 * The linker cache (/etc/ld.so.cache) of a root tree, read rather than asked
 * of `ldconfig -p`, so a generator looks at the tree it is given (a test's
 * fake one, or an image being built) and not at the machine it runs on.
 * glibc has written only the "new" format since 2.32, and before that the
 * old one followed by the new; both are read through the new part.
 */

/** A library the cache knows: its soname and the path the loader would open. */
export interface CachedLibrary {
  soname: string;
  path: string;
  /** glibc's flags: the ABI (0x03 ELF libc6) and the ISA (0x0300 x86-64, 0x0a00 AArch64...). */
  flags: number;
}

const OLD_MAGIC = "ld.so-1.7.0";
const NEW_MAGIC = "glibc-ld.so.cache1.1";
const NEW_HEADER = 48;
const NEW_ENTRY = 24;
const OLD_HEADER = 16;
const OLD_ENTRY = 12;

/** The ISA flag of this machine's 64-bit libraries (glibc's ldconfig.h). */
export const NATIVE_FLAGS: number = Deno.build.arch === "aarch64" ? 0x0a03 : 0x0303;

function text(bytes: Uint8Array, at: number, length: number): string {
  return new TextDecoder().decode(bytes.subarray(at, at + length));
}

function cString(bytes: Uint8Array, at: number): string {
  const end = bytes.indexOf(0, at);
  if (at >= bytes.length || end < 0) throw new Error(`string offset ${at} is outside the file`);
  return new TextDecoder().decode(bytes.subarray(at, end));
}

/** Where the new format starts in `bytes`; throws when it is not a linker cache. */
function newPart(bytes: Uint8Array, view: DataView): number {
  if (text(bytes, 0, NEW_MAGIC.length) === NEW_MAGIC) return 0;
  if (text(bytes, 0, OLD_MAGIC.length) !== OLD_MAGIC || bytes.length < OLD_HEADER) {
    throw new Error("not a glibc linker cache");
  }
  const old = view.getUint32(12, true);
  const start = (OLD_HEADER + old * OLD_ENTRY + 7) & ~7;
  if (text(bytes, start, NEW_MAGIC.length) !== NEW_MAGIC) {
    throw new Error("an old-format linker cache without the new part (run ldconfig)");
  }
  return start;
}

/** The libraries of a cache file's bytes, in the cache's order (the loader's preference). */
export function parseLdCache(bytes: Uint8Array): CachedLibrary[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const start = newPart(bytes, view);
  if (bytes.length < start + NEW_HEADER) throw new Error("truncated linker cache");
  const count = view.getUint32(start + 20, true);
  if (start + NEW_HEADER + count * NEW_ENTRY > bytes.length) {
    throw new Error(`truncated linker cache (${count} entries announced)`);
  }
  const libraries: CachedLibrary[] = [];
  for (let i = 0; i < count; i++) {
    const at = start + NEW_HEADER + i * NEW_ENTRY;
    libraries.push({
      flags: view.getInt32(at, true),
      // String offsets are from the start of the new part.
      soname: cString(bytes, start + view.getUint32(at + 4, true)),
      path: cString(bytes, start + view.getUint32(at + 8, true)),
    });
  }
  return libraries;
}

/** The native libraries of `root`'s linker cache; none when the tree has no cache. */
export function readLdCache(root: string): CachedLibrary[] {
  const file = `${root.replace(/\/$/, "")}/etc/ld.so.cache`;
  let bytes: Uint8Array;
  try {
    bytes = Deno.readFileSync(file);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return [];
    throw new Error(`${file}: ${(err as Error).message}`);
  }
  try {
    return parseLdCache(bytes).filter((l) => (l.flags & 0xffff) === NATIVE_FLAGS);
  } catch (err) {
    throw new Error(`${file}: ${(err as Error).message}`);
  }
}
