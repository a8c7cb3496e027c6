/**
 * The image's side of `--mpi`: its program, its dynamic linker cache, its C
 * library, and where its loader would find a library by SONAME. The loader
 * looks in the program's DT_RPATH (when it has no DT_RUNPATH), then
 * LD_LIBRARY_PATH, then DT_RUNPATH, and only then in /etc/ld.so.cache: an
 * image that sets LD_LIBRARY_PATH (a Dockerfile's ENV) or a program linked
 * with an RPATH (Spack, EasyBuild) finds its own MPI there first, so the
 * host's must cover those files too.
 */
import { dirname, join } from "../path.ts";
import { DEFAULT_PATH } from "../runtime/env.ts";
import { type ElfInfo, isElf, readElf } from "./elf.ts";
import type { ImageFiles } from "./image_files.ts";
import { type LdCache, parseLdCache } from "../sys/ldcache.ts";

export const LD_CACHE = "/etc/ld.so.cache";
/** Where glibc looks for libc.so.6 when an image has no cache entry for it. */
const LIBC_DIRS = [
  "/lib/x86_64-linux-gnu",
  "/lib/aarch64-linux-gnu",
  "/lib64",
  "/usr/lib64",
  "/lib",
];

export interface ImageLibs {
  files: ImageFiles;
  cache: LdCache;
  /** The command's executable in the image (resolved), when it is there. */
  programPath?: string;
  /** Undefined for a script or a missing program. */
  program?: ElfInfo;
  /** Directories the loader searches before the cache, for the program (absolute, in order). */
  searchDirs: string[];
}

function variable(env: string[], name: string): string | undefined {
  return env.find((e) => e.startsWith(`${name}=`))?.slice(name.length + 1);
}

async function imageElf(
  files: ImageFiles,
  path: string,
  withSymbols: boolean,
): Promise<ElfInfo | undefined> {
  const bytes = await files.read(path);
  return isElf(bytes) ? readElf(bytes, `the image's ${path}`, withSymbols) : undefined;
}

/** Reads what the loader of `program` (a name on the image's PATH, or a path) would use. */
export async function imageLibs(
  files: ImageFiles,
  env: string[],
  program: string,
): Promise<ImageLibs> {
  const cache = files.isFile(LD_CACHE)
    ? parseLdCache(await files.read(LD_CACHE), `the image's ${LD_CACHE}`)
    : { entries: [], headerFlags: 0 };
  const programPath = program.includes("/")
    ? (files.isFile(program) ? files.resolve(program) : undefined)
    : files.findIn((variable(env, "PATH") ?? DEFAULT_PATH).split(":"), program);
  const elf = programPath === undefined ? undefined : await imageElf(files, programPath, true);
  const origin = (dir: string) =>
    dir.replace(/\$\{ORIGIN\}|\$ORIGIN/g, dirname(programPath ?? "/"));
  const dirs = [
    ...(elf !== undefined && elf.runpath.length === 0 ? elf.rpath.map(origin) : []),
    ...(variable(env, "LD_LIBRARY_PATH") ?? "").split(":"),
    ...(elf?.runpath ?? []).map(origin),
  ];
  // $LIB and $PLATFORM depend on the machine; relative entries on the working directory.
  const searchDirs = [...new Set(dirs.filter((d) => d.startsWith("/") && !d.includes("$")))];
  return { files, cache, programPath, program: elf, searchDirs };
}

/**
 * The image's files named `soname` in the directories searched before the
 * cache, in the loader's order, then (`withCache`) the cache's.
 */
export function imageFilesOf(libs: ImageLibs, soname: string, withCache: boolean): string[] {
  const found = libs.searchDirs.map((d) => join(d, soname)).filter((p) => libs.files.isFile(p));
  const cached = withCache ? libs.cache.entries.find((e) => e.soname === soname)?.path : undefined;
  const all = [...found, ...(cached === undefined ? [] : [cached])];
  return [...new Set(all.map((p) => libs.files.resolve(p)!))];
}

/** The image's libc.so.6, parsed (its version definitions). */
export async function imageLibc(libs: ImageLibs): Promise<ElfInfo | undefined> {
  const entry = libs.cache.entries.find((e) => e.soname === "libc.so.6");
  const path = entry?.path ?? libs.files.findIn(LIBC_DIRS, "libc.so.6");
  return path === undefined ? undefined : await imageElf(libs.files, path, false);
}
