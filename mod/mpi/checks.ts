/**
 * Whether a host MPI can replace an image's, checked before the run in the
 * order the failures would show at run time, each refused with one line that
 * names the library and the fix:
 * 1. SONAME major: the MPI ABI (MPICH's libmpich.so.12 and the MPICH ABI
 *    initiative's libmpi.so.12 are one ABI; libmpi.so.40, Open MPI's, another).
 * 2. glibc: the newest GLIBC_x.y any injected library needs must be in the
 *    image's libc (host MPICH 4.0.2 into a bullseye image: GLIBC_2.34, which
 *    Sarus's MPI version check lets through and the loader then refuses).
 * 3. Symbols: every MPI_/PMPI_ function the program imports must be in the
 *    host library (an MPI-4 program on an MPICH 3 host: MPI_Info_create_env).
 * 4. Minor version: a host library older than the image's is a warning (the
 *    symbol check has already passed, so what the program calls exists).
 */
import { ShoalError } from "../errors.ts";
import type { ElfInfo } from "./elf.ts";
import { isGlibc } from "../sys/ldcache.ts";

/** Dotted numbers compared numerically: 2.34 > 2.4. */
export function compareVersions(a: string, b: string): number {
  const x = a.split(".").map(Number);
  const y = b.split(".").map(Number);
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (x[i] ?? 0) - (y[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** `libmpich.so.12` → { name: "libmpich", major: 12 }; undefined for another name. */
export function mpiSoname(soname: string): { name: string; major: number } | undefined {
  const m = soname.match(/^(libmpi|libmpich)\.so\.(\d+)$/);
  return m === null ? undefined : { name: m[1]!, major: Number(m[2]) };
}

/** The numbers after `.so.` in a library's file name: libmpich.so.12.2.2 → [12, 2, 2]. */
export function fileVersion(path: string): number[] {
  const m = path.match(/\.so\.([\d.]+)$/);
  return m === null ? [] : m[1]!.split(".").filter((p) => p !== "").map(Number);
}

export function checkSoname(imageSoname: string, hostSoname: string, hostPath: string): void {
  const image = mpiSoname(imageSoname);
  const host = mpiSoname(hostSoname);
  if (image === undefined || host === undefined || image.major !== host.major) {
    throw new ShoalError(
      `--mpi: the image's MPI is ${imageSoname} but the host's ${hostPath} is ${hostSoname}: different ABIs`,
      {
        hint:
          "use an image built with an MPI of the host's ABI (MPICH ABI: libmpi.so.12 or libmpich.so.12), or --mpi-type for another host MPI",
      },
    );
  }
}

/** `GLIBC_2.34` → "2.34"; undefined for other version names. */
function glibcVersion(name: string): string | undefined {
  return name.match(/^GLIBC_(\d+(?:\.\d+)+)$/)?.[1];
}

/** The newest glibc version `libs` need, and the first library that needs it. */
export function glibcNeed(
  libs: { path: string; elf: ElfInfo }[],
): { version: string; library: string } | undefined {
  let best: { version: string; library: string } | undefined;
  for (const lib of libs) {
    for (const [file, names] of lib.elf.versionNeeds) {
      if (!isGlibc(file)) continue;
      for (const name of names) {
        const v = glibcVersion(name);
        if (v !== undefined && (best === undefined || compareVersions(v, best.version) > 0)) {
          best = { version: v, library: lib.path };
        }
      }
    }
  }
  return best;
}

/** The newest GLIBC_x.y a libc.so.6 defines (2.30 for glibc 2.31, which added none). */
export function glibcProvided(libc: ElfInfo): string | undefined {
  return libc.versionDefs.map(glibcVersion).filter((v) => v !== undefined)
    .sort(compareVersions).at(-1);
}

export function checkGlibc(
  need: { version: string; library: string } | undefined,
  imageGlibc: string | undefined,
): void {
  if (need === undefined || imageGlibc === undefined) return;
  if (compareVersions(need.version, imageGlibc) > 0) {
    throw new ShoalError(
      `--mpi: the host's ${need.library} needs GLIBC_${need.version}, the image's glibc has only up to GLIBC_${imageGlibc}`,
      {
        hint:
          `use an image with glibc ${need.version} or newer, or --mpi-type with a host MPI built for an older glibc`,
      },
    );
  }
}

export function checkSymbols(
  program: string,
  imports: string[],
  exports: Set<string>,
  hostPath: string,
): void {
  const missing = imports.filter((s) => /^P?MPI_/.test(s) && !exports.has(s));
  if (missing.length > 0) {
    throw new ShoalError(
      `--mpi: ${program} calls ${missing.join(", ")}, which the host's ${hostPath} does not have`,
      {
        hint:
          "run it with the image's own MPI (without --mpi), or use a host MPI as new as the image's (--mpi-type)",
      },
    );
  }
}

/** A warning when the host's library is older than the image's (by their file names). */
export function minorWarning(hostPath: string, imagePath: string): string | undefined {
  const host = fileVersion(hostPath);
  const image = fileVersion(imagePath);
  if (host.length === 0 || image.length === 0) return undefined;
  if (compareVersions(host.join("."), image.join(".")) >= 0) return undefined;
  return `--mpi: the host's ${hostPath} is older than the image's ${imagePath}: the program may need something it lacks`;
}
