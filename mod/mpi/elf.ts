/**
 * What the dynamic linker reads of an ELF shared object or program: its
 * SONAME, NEEDED libraries, the symbol versions it needs (GLIBC_2.34 from
 * libc.so.6) and defines, and the dynamic symbols it imports and exports.
 * 64-bit little-endian only (x86_64, aarch64: the machines shoal runs on).
 * Read from the section headers, which every distribution's libraries keep.
 */
import { ShoalError } from "../errors.ts";

export interface ElfInfo {
  soname?: string;
  needed: string[];
  /** DT_RPATH and DT_RUNPATH, split at ':' ($ORIGIN unexpanded). */
  rpath: string[];
  runpath: string[];
  /** Version names needed, per NEEDED file (`libc.so.6` → `GLIBC_2.34`, ...). */
  versionNeeds: Map<string, string[]>;
  /** Version names this object defines (its base version left out). */
  versionDefs: string[];
  /** Undefined dynamic symbols: what it takes from other objects. */
  imports: string[];
  /** Defined global or weak dynamic symbols: what it gives. */
  exports: Set<string>;
}

const SHT_DYNAMIC = 6;
const SHT_DYNSYM = 11;
const SHT_GNU_VERDEF = 0x6ffffffd;
const SHT_GNU_VERNEED = 0x6ffffffe;
const DT_NEEDED = 1n;
const DT_SONAME = 14n;
const DT_RPATH = 15n;
const DT_RUNPATH = 29n;
const VER_FLG_BASE = 1;
const STB_GLOBAL = 1;
const STB_WEAK = 2;

interface Section {
  type: number;
  offset: number;
  size: number;
  link: number;
  info: number;
}

/** Whether `bytes` start like an ELF file (a script does not). */
export function isElf(bytes: Uint8Array): boolean {
  return bytes.length >= 4 && bytes[0] === 0x7f && bytes[1] === 0x45 && bytes[2] === 0x4c &&
    bytes[3] === 0x46;
}

/**
 * Reads the parts of the file at `path` that readElf looks at: a library
 * with debug information is tens of megabytes (Debian's libmpich: 41 MB), of
 * which the dynamic linker's sections are a few hundred kilobytes.
 */
export function readElfFile(path: string, withSymbols: boolean): ElfInfo {
  using file = Deno.openSync(path);
  // Zero-filled pages cost nothing until written: only the ranges read are.
  const bytes = new Uint8Array(file.statSync().size);
  const load = (at: number, len: number) => {
    let done = 0;
    file.seekSync(at, Deno.SeekMode.Start);
    while (done < len) {
      const n = file.readSync(bytes.subarray(at + done, at + len));
      if (n === null || n === 0) break;
      done += n;
    }
  };
  load(0, Math.min(64, bytes.length));
  return readElf(bytes, path, withSymbols, load);
}

/**
 * Parses `bytes`; `name` is for errors only. The dynamic symbols (imports,
 * exports) only `withSymbols`: most of the time of a large library. `load`
 * fills a range of `bytes` before it is read (readElfFile).
 */
export function readElf(
  bytes: Uint8Array,
  name: string,
  withSymbols = true,
  load: (at: number, len: number) => void = () => {},
): ElfInfo {
  const bad = (what: string) =>
    new ShoalError(`${name}: not a usable ELF shared object (${what})`, {
      hint: "check the path in the site config's mpi section",
    });
  if (!isElf(bytes)) throw bad("no ELF header");
  if (bytes[4] !== 2 || bytes[5] !== 1) throw bad("not 64-bit little-endian");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const u16 = (at: number) => view.getUint16(at, true);
  const u32 = (at: number) => view.getUint32(at, true);
  const u64 = (at: number) => Number(view.getBigUint64(at, true));
  const inside = (at: number, len: number) => at >= 0 && len >= 0 && at + len <= bytes.length;
  try {
    const shoff = u64(0x28);
    const shentsize = u16(0x3a);
    const shnum = u16(0x3c);
    if (shentsize < 64 || !inside(shoff, shnum * shentsize)) {
      throw bad("section headers out of range");
    }
    load(shoff, shnum * shentsize);
    const sections: Section[] = [];
    for (let i = 0; i < shnum; i++) {
      const at = shoff + i * shentsize;
      const s = {
        type: u32(at + 4),
        offset: u64(at + 24),
        size: u64(at + 32),
        link: u32(at + 40),
        info: u32(at + 44),
      };
      if (s.type !== 8 /* NOBITS */ && !inside(s.offset, s.size)) throw bad("section out of range");
      sections.push(s);
    }
    const decoder = new TextDecoder();
    const stringAt = (table: Section | undefined, off: number) => {
      if (table === undefined || off >= table.size) throw bad("string out of range");
      const start = table.offset + off;
      let end = start;
      while (end < table.offset + table.size && bytes[end] !== 0) end++;
      return decoder.decode(bytes.subarray(start, end));
    };
    const info: ElfInfo = {
      needed: [],
      rpath: [],
      runpath: [],
      versionNeeds: new Map(),
      versionDefs: [],
      imports: [],
      exports: new Set(),
    };
    const wanted = [
      SHT_DYNAMIC,
      SHT_GNU_VERNEED,
      SHT_GNU_VERDEF,
      ...(withSymbols ? [SHT_DYNSYM] : []),
    ];
    for (const s of sections) {
      const strings = sections[s.link];
      if (!wanted.includes(s.type)) continue;
      load(s.offset, s.size);
      if (strings !== undefined) load(strings.offset, strings.size);
      if (s.type === SHT_DYNAMIC) {
        for (let at = s.offset; at + 16 <= s.offset + s.size; at += 16) {
          const tag = view.getBigInt64(at, true);
          if (tag === 0n) break;
          if (tag === DT_NEEDED) info.needed.push(stringAt(strings, u64(at + 8)));
          if (tag === DT_SONAME) info.soname = stringAt(strings, u64(at + 8));
          if (tag === DT_RPATH) info.rpath.push(...stringAt(strings, u64(at + 8)).split(":"));
          if (tag === DT_RUNPATH) info.runpath.push(...stringAt(strings, u64(at + 8)).split(":"));
        }
      } else if (s.type === SHT_DYNSYM) {
        for (let at = s.offset + 24; at + 24 <= s.offset + s.size; at += 24) {
          const bind = bytes[at + 4]! >> 4;
          if (bind !== STB_GLOBAL && bind !== STB_WEAK) continue;
          const symbol = stringAt(strings, u32(at));
          if (symbol === "") continue;
          if (u16(at + 6) === 0) info.imports.push(symbol);
          else info.exports.add(symbol);
        }
      } else if (s.type === SHT_GNU_VERNEED) {
        let at = s.offset;
        for (let n = 0; n < s.info; n++) {
          const file = stringAt(strings, u32(at + 4));
          const versions: string[] = [];
          let aux = at + u32(at + 8);
          for (let k = 0; k < u16(at + 2); k++) {
            versions.push(stringAt(strings, u32(aux + 8)));
            aux += u32(aux + 12);
          }
          info.versionNeeds.set(file, versions);
          const next = u32(at + 12);
          if (next === 0) break;
          at += next;
        }
      } else if (s.type === SHT_GNU_VERDEF) {
        let at = s.offset;
        for (let n = 0; n < s.info; n++) {
          if ((u16(at + 2) & VER_FLG_BASE) === 0) {
            info.versionDefs.push(stringAt(strings, u32(at + u32(at + 12))));
          }
          const next = u32(at + 16);
          if (next === 0) break;
          at += next;
        }
      }
    }
    return info;
  } catch (err) {
    if (err instanceof RangeError) throw bad("truncated");
    throw err;
  }
}
