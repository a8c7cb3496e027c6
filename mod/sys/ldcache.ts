/**
 * The dynamic linker's cache, /etc/ld.so.cache, in glibc's
 * "glibc-ld.so.cache1.1" format (glibc 2.32 and later write only it; older
 * ones put it after the libc5-era "ld.so-1.7.0" table, which is skipped).
 * Read rather than asked of `ldconfig -p`, so that the tree looked at is the
 * one given (an image, a CDI generator's root), not the running machine's;
 * written back by `run --mpi` with the injected libraries' entries, so that
 * every program of the image finds them without LD_LIBRARY_PATH (which
 * programs and scripts reset or override).
 */
import { ShoalError } from "../errors.ts";

/** The ISA flags of this machine's 64-bit libraries (glibc's ldconfig.h: ELF libc6 | x86-64 or AArch64). */
export const NATIVE_FLAGS: number = Deno.build.arch === "aarch64" ? 0x0a03 : 0x0303;

/** glibc's own libraries (and its dynamic linker): a container keeps its image's. */
const GLIBC =
  /^(ld-linux[^/]*|ld64|libc|libpthread|libdl|libm|librt|libresolv|libutil|libanl|libnsl|libBrokenLocale|libmvec|libthread_db|libc_malloc_debug|libmemusage|libpcprofile|libnss_[a-z0-9]+)\.so(\.\d+)*$/;

export function isGlibc(soname: string): boolean {
  return GLIBC.test(soname);
}

export interface CacheEntry {
  /** The SONAME programs ask for. */
  soname: string;
  /** Where the linker opens it. */
  path: string;
  /** Kind of library (glibc's FLAG_ELF_LIBC6 | architecture bits). */
  flags: number;
  /** Bit 62: the library is in a glibc-hwcaps subdirectory, named in the extension section. */
  hwcap: bigint;
}

export interface LdCache {
  entries: CacheEntry[];
  /** The header's flags byte (endianness, glibc 2.33+), kept when written back. */
  headerFlags: number;
}

const OLD_MAGIC = "ld.so-1.7.0";
const NEW_MAGIC = "glibc-ld.so.cache1.1";
const HEADER = 48;
const ENTRY = 24;
/** An entry in a glibc-hwcaps subdirectory names it through the extension section. */
const HWCAP_EXTENSION = 1n << 62n;

const decoder = new TextDecoder();
const encoder = new TextEncoder();

function startsWith(bytes: Uint8Array, at: number, magic: string): boolean {
  return decoder.decode(bytes.subarray(at, at + magic.length)) === magic;
}

/** Parses a cache; `name` is for errors. An empty file is an empty cache. */
export function parseLdCache(bytes: Uint8Array, name: string): LdCache {
  if (bytes.length === 0) return { entries: [], headerFlags: 0 };
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const notCache = () =>
    new ShoalError(`${name}: not a glibc linker cache (format 1.1)`, {
      hint: "run ldconfig in that tree (for an image: a RUN step of its build)",
    });
  let base = 0;
  if (startsWith(bytes, 0, OLD_MAGIC)) {
    if (bytes.length < 16) throw notCache();
    const oldCount = view.getUint32(12, true);
    base = (12 + 4 + oldCount * 12 + 7) & ~7;
  }
  if (!startsWith(bytes, base, NEW_MAGIC) || base + HEADER > bytes.length) throw notCache();
  const count = view.getUint32(base + 20, true);
  if (base + HEADER + count * ENTRY > bytes.length) {
    throw new ShoalError(`${name}: truncated linker cache (${count} entries announced)`);
  }
  const string = (off: number) => {
    const start = base + off;
    const end = bytes.indexOf(0, start);
    if (start >= bytes.length || end < 0) {
      throw new ShoalError(`${name}: string offset ${off} is outside the linker cache`);
    }
    return decoder.decode(bytes.subarray(start, end));
  };
  const entries: CacheEntry[] = [];
  for (let i = 0; i < count; i++) {
    const at = base + HEADER + i * ENTRY;
    entries.push({
      flags: view.getInt32(at, true),
      soname: string(view.getUint32(at + 4, true)),
      path: string(view.getUint32(at + 8, true)),
      hwcap: view.getBigUint64(at + 16, true),
    });
  }
  return { entries, headerFlags: bytes[base + 28]! };
}

const isDigit = (c: number | undefined) => c !== undefined && c >= 0x30 && c <= 0x39;

/** glibc's _dl_cache_libcmp: digit runs compare as numbers; the linker's binary search relies on it. */
export function libcmp(a: string, b: string): number {
  const p = encoder.encode(a);
  const q = encoder.encode(b);
  let i = 0;
  let j = 0;
  while (i < p.length) {
    if (isDigit(p[i])) {
      if (!isDigit(q[j])) return 1;
      let x = 0;
      let y = 0;
      while (isDigit(p[i])) x = x * 10 + p[i++]! - 0x30;
      while (isDigit(q[j])) y = y * 10 + q[j++]! - 0x30;
      if (x !== y) return x - y;
    } else if (isDigit(q[j])) {
      return -1;
    } else if (j >= q.length || p[i] !== q[j]) {
      return p[i]! - (q[j] ?? 0);
    } else {
      i++;
      j++;
    }
  }
  return j < q.length ? -q[j]! : 0;
}

/**
 * The cache with `add` in place of every entry of the same name, in the
 * order ldconfig writes (names descending by libcmp, then higher flags first).
 */
export function withEntries(cache: LdCache, add: CacheEntry[]): LdCache {
  const replaced = new Set(add.map((e) => e.soname));
  const entries = [...cache.entries.filter((e) => !replaced.has(e.soname)), ...add];
  entries.sort((a, b) => libcmp(b.soname, a.soname) || b.flags - a.flags);
  return { entries, headerFlags: cache.headerFlags };
}

/**
 * The cache file's bytes (new format only). Without the extension section,
 * which is not rewritten: its glibc-hwcaps entries are left out, and the
 * loader finds those libraries in their plain directories.
 */
export function serializeLdCache(full: LdCache): Uint8Array {
  const cache = {
    ...full,
    entries: full.entries.filter((e) => (e.hwcap & HWCAP_EXTENSION) === 0n),
  };
  const strings: number[] = [];
  const offsets = new Map<string, number>();
  const start = HEADER + cache.entries.length * ENTRY;
  const offsetOf = (s: string) => {
    let off = offsets.get(s);
    if (off === undefined) {
      off = start + strings.length;
      offsets.set(s, off);
      strings.push(...encoder.encode(s), 0);
    }
    return off;
  };
  const keys = cache.entries.map((e) => [offsetOf(e.soname), offsetOf(e.path)] as const);
  const out = new Uint8Array(start + strings.length);
  const view = new DataView(out.buffer);
  out.set(encoder.encode(NEW_MAGIC), 0);
  view.setUint32(20, cache.entries.length, true);
  view.setUint32(24, strings.length, true);
  out[28] = cache.headerFlags;
  cache.entries.forEach((e, i) => {
    const at = HEADER + i * ENTRY;
    view.setInt32(at, e.flags, true);
    view.setUint32(at + 4, keys[i]![0], true);
    view.setUint32(at + 8, keys[i]![1], true);
    view.setBigUint64(at + 16, e.hwcap, true);
  });
  out.set(strings, start);
  return out;
}
