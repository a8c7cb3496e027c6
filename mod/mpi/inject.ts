/**
 * `shoal run --mpi`: the host's MPI in place of the image's (Sarus's model).
 * The image's MPI is found by SONAME (what the program needs, else what its
 * ld.so.cache lists); the site's MPI type names the host's libraries. After
 * the checks (checks.ts), every library of the host closure (closure.ts) is
 * bind-mounted read-only into INJECT_DIR under its SONAME, and over the
 * image's own copies its loader would find (image_libs.ts), the plugin
 * directories beside them (UCX looks for its transports in `ucx/` next to
 * libucs), and the image's ld.so.cache is rewritten so that those SONAMEs
 * lead to INJECT_DIR: every program of the image finds them. Loaded only by
 * runs with --mpi.
 */
import { exists as fileExists } from "../sys/fs.ts";
import { basename, join } from "../path.ts";
import { ConfigError, ShoalError, UsageError } from "../errors.ts";
import type { SiteConfig } from "../config/schema.ts";
import type { MountRequest } from "../runtime/mounts.ts";
import type { DeviceRequest } from "../runtime/devices.ts";
import type { RunRequest } from "../runtime/spec.ts";
import type { EnvOption } from "../runtime/env.ts";
import { ImageFiles } from "./image_files.ts";
import { type CacheEntry, NATIVE_FLAGS, serializeLdCache, withEntries } from "../sys/ldcache.ts";
import { type Closure, hostClosure } from "./closure.ts";
import { imageFilesOf, imageLibc, type ImageLibs, imageLibs, LD_CACHE } from "./image_libs.ts";
import {
  checkGlibc,
  checkSoname,
  checkSymbols,
  glibcNeed,
  glibcProvided,
  minorWarning,
  mpiSoname,
} from "./checks.ts";

/** Where the injected libraries appear in the container. */
export const INJECT_DIR = "/opt/shoal/mpi/lib";

export interface MpiImage {
  squashfsPath: string;
  env: string[];
}

export interface MpiInjection {
  /** Read-only binds of host files, checked like the user's own mounts. */
  mounts: MountRequest[];
  devices: DeviceRequest[];
  env: EnvOption[];
  /** The image's ld.so.cache with the injected libraries: to be bound over LD_CACHE. */
  ldCache: Uint8Array;
  warnings: string[];
  /** One line per injected library, for --debug. */
  details: string[];
}

/** The site's MPI type asked for: `--mpi-type NAME`, else the default. */
function siteType(config: SiteConfig, name: string | undefined) {
  const types = Object.keys(config.mpi.types);
  if (types.length === 0) {
    throw new ConfigError(
      "--mpi: this site configures no host MPI (the mpi section of the site config)",
      {
        hint: "run without --mpi to use the image's own MPI, or ask your admin",
      },
    );
  }
  const chosen = name ?? config.mpi.default ?? types[0]!;
  const type = config.mpi.types[chosen];
  if (type === undefined) {
    throw new UsageError(
      `--mpi-type ${chosen}: no such MPI type (this site has: ${types.join(", ")})`,
    );
  }
  return { name: chosen, ...type };
}

/** The image's MPI SONAME: what the program needs, else the first its ld.so.cache lists. */
function imageMpi(libs: ImageLibs): string | undefined {
  return libs.program?.needed.find((n) => mpiSoname(n) !== undefined) ??
    libs.cache.entries.find((e) => mpiSoname(e.soname) !== undefined)?.soname;
}

type MpiType = ReturnType<typeof siteType>;

/** The checks of checks.ts, in their order; returns the warnings. */
async function check(
  type: MpiType,
  libs: ImageLibs,
  imageSoname: string,
  closure: Closure,
): Promise<string[]> {
  const [host] = closure.libraries.values();
  checkSoname(imageSoname, host!.soname, host!.path);
  const libc = await imageLibc(libs);
  checkGlibc(
    glibcNeed([...closure.libraries.values(), ...closure.plugins]),
    libc && glibcProvided(libc),
  );
  if (libs.program !== undefined) {
    const roots = [...closure.libraries.values()].slice(0, type.libraries.length);
    const exports = new Set(roots.flatMap((r) => [...r.elf.exports]));
    checkSymbols(libs.programPath!, libs.program.imports, exports, host!.path);
  }
  const [imageFile] = imageFilesOf(libs, imageSoname, true);
  const older = imageFile && minorWarning(host!.path, imageFile);
  return older === undefined ? [] : [older];
}

/** Checks the host MPI against the image's and lays out its injection. */
export async function injectMpi(
  config: SiteConfig,
  typeName: string | undefined,
  image: MpiImage,
  command: string[],
): Promise<MpiInjection> {
  const type = siteType(config, typeName);
  const libs = await imageLibs(await ImageFiles.open(image.squashfsPath), image.env, command[0]!);
  const imageSoname = imageMpi(libs);
  if (imageSoname === undefined) {
    throw new UsageError(
      `--mpi: the image has no MPI library (no libmpi.so.N or libmpich.so.N in its ${LD_CACHE} or needed by ${
        command[0]
      })`,
      {
        hint:
          "--mpi replaces an image's MPI with the host's: build the image with MPICH (or an MPICH-ABI MPI), or run without --mpi",
      },
    );
  }
  const closure = hostClosure(
    [...type.libraries, ...type.dependencies],
    type.pluginDirs.map((p) => p.source),
    type.libraryPath,
  );
  const warnings = await check(type, libs, imageSoname, closure);
  const [host] = closure.libraries.values();
  const flags = libs.cache.entries.find((e) => e.soname === "libc.so.6")?.flags ?? NATIVE_FLAGS;
  const entries: CacheEntry[] = [];
  const mounts: MountRequest[] = [];
  const details: string[] = [];
  const bound = new Set<string>();
  const bind = (source: string, destination: string, why: string) => {
    if (bound.has(destination)) return;
    bound.add(destination);
    mounts.push({ source, destination, readonly: true, option: `--mpi (${why})` });
    details.push(`--mpi: ${source} at ${destination} (${why})`);
  };
  for (const lib of closure.libraries.values()) {
    const at = join(INJECT_DIR, lib.soname);
    bind(lib.path, at, lib.neededBy);
    entries.push({ soname: lib.soname, path: at, flags, hwcap: 0n });
  }
  // The image's copies its loader finds before the cache (RPATH, LD_LIBRARY_PATH; image_libs.ts),
  // and its MPI wherever it is: a program the checks did not see may name its file.
  const shadowed = [
    ...[...closure.libraries.values()].map((lib) => ({ lib, soname: lib.soname })),
    ...(imageSoname === host!.soname ? [] : [{ lib: host!, soname: imageSoname }]),
  ];
  for (const { lib, soname } of shadowed) {
    for (const file of imageFilesOf(libs, soname, lib === host)) {
      bind(lib.path, file, `over the image's ${soname}`);
    }
  }
  if (imageSoname !== host!.soname) {
    entries.push({ soname: imageSoname, path: join(INJECT_DIR, host!.soname), flags, hwcap: 0n });
  }
  for (const dir of type.pluginDirs) {
    bind(dir.source, dir.destination ?? join(INJECT_DIR, basename(dir.source)), "plugins");
  }
  return {
    mounts: [...mounts, ...extraMounts(type, warnings)],
    devices: type.devices.filter(exists).flatMap(deviceNodes).map((path) => ({
      hostPath: path,
      containerPath: path,
      access: "rw",
      option: `--mpi (device ${path})`,
    })),
    env: Object.entries(type.env).map(([name, value]) => ({ name, value })),
    ldCache: serializeLdCache(withEntries(libs.cache, entries)),
    warnings,
    details,
  };
}

/** The type's own mounts that exist here; missing optional ones are reported in `warnings`. */
function extraMounts(type: MpiType, warnings: string[]): MountRequest[] {
  return type.mounts.flatMap((m) => {
    if (exists(m.source)) {
      const option = `--mpi (mount ${m.source})`;
      return [{ source: m.source, destination: m.destination, readonly: m.readonly, option }];
    }
    if (!m.optional) {
      throw new ConfigError(
        `--mpi: the ${type.name} mount ${m.source} does not exist on this node`,
        {
          hint: "ask your admin, or mark it optional in the site config's mpi section",
        },
      );
    }
    warnings.push(`--mpi: mount ${m.source} skipped: it does not exist on this node`);
    return [];
  });
}

/**
 * `request` with the injection's mounts, devices and environment (before the
 * user's -e, which wins), and the rewritten cache from `cacheFile` (written
 * by the caller in the run's bundle) over the image's.
 */
export function withInjection(
  request: RunRequest,
  mpi: MpiInjection,
  cacheFile: string,
): RunRequest {
  return {
    ...request,
    mounts: [
      ...request.mounts,
      ...mpi.mounts,
      { source: cacheFile, destination: LD_CACHE, readonly: true, option: "--mpi (ld.so.cache)" },
    ],
    devices: [...request.devices, ...mpi.devices],
    env: [...mpi.env, ...request.env],
  };
}

/** A device node, or the device nodes of a directory such as /dev/infiniband. */
function deviceNodes(path: string): string[] {
  if (!Deno.statSync(path).isDirectory) return [path];
  return [...Deno.readDirSync(path)].map((e) => join(path, e.name))
    .filter((p) => Deno.statSync(p).isCharDevice).sort();
}

function exists(path: string): boolean {
  try {
    return fileExists(path);
  } catch (err) {
    throw new ShoalError(`--mpi: ${path}: ${(err as Error).message}`);
  }
}
