/**
 * The host libraries an injected MPI brings: the site's MPI libraries, their
 * NEEDED libraries recursively, and those of every plugin in the site's plugin
 * directories (UCX transports, libfabric providers), which are dlopened at run
 * time: a plugin whose dependency is missing in the container is skipped
 * without a word, and the job silently runs on a slower transport. glibc's own
 * libraries are never part of it: the image keeps its C library (the glibc
 * check compares what the closure needs with what the image has).
 */
import { basename, dirname, join } from "../path.ts";
import { ConfigError, ShoalError } from "../errors.ts";
import { type ElfInfo, isElf, readElfFile } from "./elf.ts";
import { isGlibc, NATIVE_FLAGS, parseLdCache } from "../sys/ldcache.ts";

const SITE_LIBRARY = "the site's MPI library";

export interface HostLibrary {
  soname: string;
  /** Its real path on the host. */
  path: string;
  elf: ElfInfo;
  /** What brought it in, for messages: "the site's MPI library", "libucp.so.0", a plugin. */
  neededBy: string;
}

export interface Closure {
  /** By SONAME, the site's libraries first. */
  libraries: Map<string, HostLibrary>;
  /** The plugin files' real paths, with what they need (already in `libraries`). */
  plugins: HostLibrary[];
}

/** The real path of a host library and its ELF facts; `what` says what brought it in. */
function readHostElf(
  path: string,
  what: string,
  withSymbols: boolean,
): { real: string; elf: ElfInfo } {
  try {
    const real = Deno.realPathSync(path);
    return { real, elf: readElfFile(real, withSymbols) };
  } catch (err) {
    if (err instanceof ShoalError) throw err;
    const why = err instanceof Deno.errors.NotFound ? "does not exist" : (err as Error).message;
    throw new ConfigError(`--mpi: ${path} (${what}): ${why} on this node`, {
      hint: "ask your admin to fix the site config's mpi section, or use another --mpi-type",
    });
  }
}

/** The host's native libraries in its linker cache, by SONAME (the first wins, as for the loader). */
function hostCache(): Map<string, string> {
  const out = new Map<string, string>();
  let bytes = new Uint8Array();
  try {
    bytes = Deno.readFileSync("/etc/ld.so.cache");
  } catch { /* no cache: only the configured directories */ }
  for (const e of parseLdCache(bytes, "/etc/ld.so.cache").entries) {
    const native = (e.flags & 0xffff) === NATIVE_FLAGS;
    if (native && !out.has(e.soname)) out.set(e.soname, e.path);
  }
  return out;
}

/**
 * Everything `roots` (host paths of the site's MPI libraries) and the
 * plugins in `pluginDirs` need, found in `searchDirs`, then beside the
 * library that needs it, then through the host's ld.so.cache.
 */
export function hostClosure(roots: string[], pluginDirs: string[], searchDirs: string[]): Closure {
  const cache = hostCache();
  const libraries = new Map<string, HostLibrary>();
  const queue: HostLibrary[] = [];
  // Only the site's libraries' symbols are looked at (the symbol check).
  const add = (path: string, neededBy: string, expected?: string) => {
    const { real, elf } = readHostElf(path, neededBy, neededBy === SITE_LIBRARY);
    const soname = elf.soname ?? expected ?? basename(path);
    if (libraries.has(soname)) return;
    const lib = { soname, path: real, elf, neededBy };
    libraries.set(soname, lib);
    queue.push(lib);
  };
  for (const root of roots) add(root, SITE_LIBRARY);
  const plugins: HostLibrary[] = [];
  for (const dir of pluginDirs) {
    for (const path of pluginFiles(dir)) {
      const plugin = {
        soname: basename(path),
        path,
        elf: readHostElf(path, "a plugin", false).elf,
        neededBy: dir,
      };
      plugins.push(plugin);
      queue.push(plugin);
    }
  }
  while (queue.length > 0) {
    const lib = queue.shift()!;
    for (const name of lib.elf.needed) {
      if (isGlibc(name) || libraries.has(name)) continue;
      const where = [...searchDirs, dirname(lib.path)].map((d) => join(d, name))
        .find(isFile) ?? cache.get(name);
      const isPlugin = plugins.includes(lib);
      const by = isPlugin ? `the plugin ${lib.path}` : lib.soname;
      if (where === undefined) {
        throw new ConfigError(
          `--mpi: ${name}, needed by ${by}, is not on this node, so the injected MPI would ${
            isPlugin ? "silently skip the plugin" : "fail to load"
          } in the container`,
          {
            hint:
              `install ${name} on the node, or ask your admin to fix the site config's mpi section`,
          },
        );
      }
      add(where, by, name);
    }
  }
  return { libraries, plugins };
}

function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

/** The shared objects of a plugin directory (real paths, each once). */
function pluginFiles(dir: string): string[] {
  const out = new Set<string>();
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(dir)];
  } catch (err) {
    throw new ConfigError(`--mpi: plugin directory ${dir}: ${(err as Error).message}`, {
      hint: "fix mpi plugin directories in the site config",
    });
  }
  for (const e of entries.sort((a, b) => a.name < b.name ? -1 : 1)) {
    if (!/\.so(\.\d+)*$/.test(e.name)) continue;
    let real: string;
    try {
      real = Deno.realPathSync(join(dir, e.name));
    } catch {
      continue; // a dangling link is no plugin: the loader would not find it either
    }
    if (!isFile(real)) continue;
    const head = new Uint8Array(4);
    using f = Deno.openSync(real);
    if (f.readSync(head) === 4 && isElf(head)) out.add(real);
  }
  return [...out];
}
