/**
 * `shoal run --mpi`: the host's MPI in place of the image's (Sarus's model).
 * The image's MPI is found by SONAME (what the program needs, else what its
 * ld.so.cache lists); the site's MPI type names the host's libraries. After
 * the checks (checks.ts), every library of the host closure (closure.ts) is
 * bind-mounted read-only into INJECT_DIR under its SONAME, the host's MPI
 * also over the image's own file, the plugin directories beside them (UCX
 * looks for its transports in `ucx/` next to libucs), and the image's
 * ld.so.cache is rewritten so that those SONAMEs lead there: every program
 * of the image finds them, whatever its LD_LIBRARY_PATH. Loaded only by runs
 * with --mpi.
 */
import { basename, join } from "../path.ts";
import { ConfigError, ShoalError, UsageError } from "../errors.ts";
import type { SiteConfig } from "../config/schema.ts";
import type { MountRequest } from "../runtime/mounts.ts";
import type { DeviceRequest } from "../runtime/devices.ts";
import type { RunRequest } from "../runtime/spec.ts";
import { DEFAULT_PATH, type EnvOption } from "../runtime/env.ts";
import { type ElfInfo, isElf, readElf } from "./elf.ts";
import { ImageFiles } from "./image_files.ts";
import {
  type CacheEntry,
  type LdCache,
  parseLdCache,
  serializeLdCache,
  withEntries,
} from "./ldcache.ts";
import { hostClosure } from "./closure.ts";
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
export const LD_CACHE = "/etc/ld.so.cache";
/** glibc's ld.so.cache flags of a 64-bit library (FLAG_ELF_LIBC6 | FLAG_X8664_LIB64 or FLAG_AARCH64_LIB64). */
const LIB64_FLAGS = Deno.build.arch === "aarch64" ? 0x0a03 : 0x0303;

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

/** The image file `program` names: a path, or a name looked up on the image's PATH. */
function findProgram(files: ImageFiles, program: string, env: string[]): string | undefined {
  if (program.includes("/")) return files.isFile(program) ? files.resolve(program) : undefined;
  const path = env.find((e) => e.startsWith("PATH="))?.slice(5) ?? DEFAULT_PATH;
  return files.findIn(path.split(":"), program);
}

async function imageElf(
  files: ImageFiles,
  path: string,
  withSymbols: boolean,
): Promise<ElfInfo | undefined> {
  const bytes = await files.read(path);
  return isElf(bytes) ? readElf(bytes, `the image's ${path}`, withSymbols) : undefined;
}

/** The image's MPI SONAME: what the program needs, else the first its ld.so.cache lists. */
function imageMpi(program: ElfInfo | undefined, cache: LdCache): string | undefined {
  return program?.needed.find((n) => mpiSoname(n) !== undefined) ??
    cache.entries.find((e) => mpiSoname(e.name) !== undefined)?.name;
}

/** Checks the host MPI against the image's and lays out its injection. */
export async function injectMpi(
  config: SiteConfig,
  typeName: string | undefined,
  image: MpiImage,
  command: string[],
): Promise<MpiInjection> {
  const type = siteType(config, typeName);
  const files = await ImageFiles.open(image.squashfsPath);
  const cache = files.isFile(LD_CACHE)
    ? parseLdCache(await files.read(LD_CACHE), `the image's ${LD_CACHE}`)
    : { entries: [], headerFlags: 0 };
  const programPath = findProgram(files, command[0]!, image.env);
  const program = programPath === undefined ? undefined : await imageElf(files, programPath, true);
  const imageSoname = imageMpi(program, cache);
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
  const [host] = closure.libraries.values();
  checkSoname(imageSoname, host!.soname, host!.path);

  const libcEntry = cache.entries.find((e) => e.name === "libc.so.6");
  const libcPath = libcEntry?.path ??
    files.findIn([
      "/lib/x86_64-linux-gnu",
      "/lib64",
      "/usr/lib64",
      "/lib/aarch64-linux-gnu",
      "/lib",
    ], "libc.so.6");
  const libc = libcPath === undefined ? undefined : await imageElf(files, libcPath, false);
  checkGlibc(
    glibcNeed([...closure.libraries.values(), ...closure.plugins]),
    libc && glibcProvided(libc),
  );

  if (program !== undefined) {
    const roots = [...closure.libraries.values()].slice(0, type.libraries.length);
    checkSymbols(
      programPath!,
      program.imports,
      new Set(roots.flatMap((r) => [...r.elf.exports])),
      host!.path,
    );
  }
  const warnings: string[] = [];
  const imageEntry = cache.entries.find((e) => e.name === imageSoname);
  const imageFile = imageEntry === undefined ? undefined : files.resolve(imageEntry.path);
  const older = imageFile && minorWarning(host!.path, imageFile);
  if (older !== undefined) warnings.push(older);

  const flags = libcEntry?.flags ?? LIB64_FLAGS;
  const entries: CacheEntry[] = [];
  const mounts: MountRequest[] = [];
  const details: string[] = [];
  const bind = (source: string, destination: string, why: string) => {
    mounts.push({ source, destination, readonly: true, option: `--mpi (${why})` });
    details.push(`--mpi: ${source} at ${destination} (${why})`);
  };
  for (const lib of closure.libraries.values()) {
    const at = join(INJECT_DIR, lib.soname);
    bind(lib.path, at, lib.neededBy);
    entries.push({ name: lib.soname, path: at, flags, hwcap: 0n });
  }
  if (imageSoname !== host!.soname) {
    entries.push({ name: imageSoname, path: join(INJECT_DIR, host!.soname), flags, hwcap: 0n });
  }
  // Programs with an RPATH to the image's own MPI load it by path.
  if (imageFile !== undefined) bind(host!.path, imageFile, `over the image's ${imageSoname}`);
  for (const dir of type.pluginDirs) {
    bind(dir.source, dir.destination ?? join(INJECT_DIR, basename(dir.source)), "plugins");
  }
  for (const m of type.mounts) {
    if (!exists(m.source)) {
      if (!m.optional) {
        throw new ConfigError(
          `--mpi: the ${type.name} mount ${m.source} does not exist on this node`,
          {
            hint: "ask your admin, or mark it optional in the site config's mpi section",
          },
        );
      }
      warnings.push(`--mpi: mount ${m.source} skipped: it does not exist on this node`);
      continue;
    }
    mounts.push({
      source: m.source,
      destination: m.destination,
      readonly: m.readonly,
      option: `--mpi (mount ${m.source})`,
    });
  }
  const devices = type.devices.filter(exists).flatMap(deviceNodes).map((path) => ({
    hostPath: path,
    containerPath: path,
    access: "rw",
    option: `--mpi (device ${path})`,
  }));
  return {
    mounts,
    devices,
    env: Object.entries(type.env).map(([name, value]) => ({ name, value })),
    ldCache: serializeLdCache(withEntries(cache, entries)),
    warnings,
    details,
  };
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
    Deno.statSync(path);
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw new ShoalError(`--mpi: ${path}: ${(err as Error).message}`);
  }
}
