/**
 * What MPI launchers (Slurm's srun, MPICH's hydra, PMIx servers) hand a rank
 * besides its environment, and how it reaches the container.
 *
 * Descriptors: a launcher passes its PMI socket at whatever number it had
 * free (Slurm's pmi2 gives PMI_FD=13 with 3..10 closed) and names it in a
 * variable. runc passes 3..3+N-1 only (`--preserve-fds N`), so the socket is
 * moved to the first number after the user's own `--preserve-fds` ones and
 * the variable rewritten; the descriptors in between need not be open.
 *
 * Directories: a PMIx server names the directory of its rendezvous files and
 * shared-memory stores (PMIX_SERVER_TMPDIR, PMIX_*_BASE_PATH); the rank's
 * PMIx client opens them by those names, so they are bind-mounted at the
 * same paths (as Enroot's PMIx hook does).
 *
 * The other variables (PMI_*, PMIX_*, SLURM_*, OMPI_*, MPICH_*, UCX_*,
 * FI_*) need nothing here: the container starts from the host's environment
 * (env.ts).
 */
import { UsageError } from "../errors.ts";
import type { MountRequest } from "./mounts.ts";

/** Variables that name a descriptor the rank inherits (MPICH's PMI-1 and PMI-2 wire protocols). */
const DESCRIPTOR_VARIABLES = ["PMI_FD"];

/** A PMIx server's directories: its own, and its stores', which may lie elsewhere. */
const DIRECTORY_VARIABLE = /^PMIX_(SERVER_TMPDIR|\w+_BASE_PATH)$/;

/** A descriptor shoal was given at `from` that becomes the container's `to`. */
export interface FdMove {
  from: number;
  to: number;
}

export interface LauncherPassthrough {
  /** runc's `--preserve-fds`: the user's N plus the moved descriptors. */
  preserveFds: number;
  /** Made in the child that becomes the container (spawn.ts), in order. */
  moves: FdMove[];
  /** The host environment with the moved descriptors' variables rewritten. */
  env: Record<string, string>;
  /** The PMIx directories, bound at their own paths. */
  mounts: MountRequest[];
  warnings: string[];
}

/**
 * The descriptors, variables and mounts for a run with `--preserve-fds n`
 * (3..3+n-1 must be open), host environment `env` and the user's own
 * `mounts` (a directory the user already mounts is left to them).
 * `isInherited(fd)` says whether shoal's parent gave it `fd`.
 */
export function launcherPassthrough(
  n: number,
  env: Record<string, string>,
  mounts: MountRequest[],
  isInherited: (fd: number) => boolean = inherited,
): LauncherPassthrough {
  for (let fd = 3; fd < 3 + n; fd++) {
    if (!isInherited(fd)) {
      throw new UsageError(
        `file descriptor ${fd} is not open, so it cannot be passed to the container ` +
          `(--preserve-fds ${n})`,
      );
    }
  }
  const moves: FdMove[] = [];
  const rewritten: Record<string, string> = {};
  const warnings: string[] = [];
  for (const name of DESCRIPTOR_VARIABLES) {
    const value = env[name];
    if (value === undefined || !/^\d+$/.test(value)) continue;
    const fd = Number(value);
    // Standard descriptors and the user's preserved ones keep their numbers.
    if (fd < 3 + n) continue;
    if (!isInherited(fd)) {
      warnings.push(
        `${name}=${value} names no descriptor shoal was given; the container gets it unchanged`,
      );
      continue;
    }
    const earlier = moves.find((m) => m.from === fd);
    const to = earlier?.to ?? 3 + n + moves.length;
    if (earlier === undefined) moves.push({ from: fd, to });
    rewritten[name] = String(to);
  }
  return {
    preserveFds: n + moves.length,
    moves,
    env: { ...env, ...rewritten },
    mounts: pmixMounts(env, mounts),
    warnings,
  };
}

/** PMIx's directories that exist, outermost only, not already a destination of the user's. */
function pmixMounts(env: Record<string, string>, userMounts: MountRequest[]): MountRequest[] {
  const trimmed = (p: string) => p.replace(/\/+$/, "") || "/";
  const dirs = Object.entries(env)
    .filter(([name, value]) => DIRECTORY_VARIABLE.test(name) && value.startsWith("/"))
    .map(([name, value]) => ({ name, path: trimmed(value) }))
    .filter((d) => d.path !== "/" && isDirectory(d.path))
    .sort((a, b) => a.path.length - b.path.length);
  const taken = new Set(userMounts.map((m) => trimmed(m.destination)));
  const out: MountRequest[] = [];
  for (const d of dirs) {
    const covered = [...taken].some((t) => d.path === t || d.path.startsWith(`${t}/`)) ||
      out.some((m) => d.path === m.source || d.path.startsWith(`${m.source}/`));
    if (covered) continue;
    out.push({
      source: d.path,
      destination: d.path,
      readonly: false,
      option: `${d.name}=${d.path}`,
    });
  }
  return out;
}

function isDirectory(path: string): boolean {
  try {
    return Deno.statSync(path).isDirectory;
  } catch {
    return false;
  }
}

/** O_CLOEXEC in /proc/PID/fdinfo's octal "flags". */
const O_CLOEXEC = 0o2000000;

/**
 * Whether `fd` is open and came from shoal's parent: Deno's own descriptors
 * (event loop, files it opened) are all close-on-exec and are not the user's.
 */
export function inherited(fd: number): boolean {
  try {
    const info = Deno.readTextFileSync(`/proc/self/fdinfo/${fd}`);
    const flags = info.match(/^flags:\s+([0-7]+)$/m);
    return flags !== null && (parseInt(flags[1]!, 8) & O_CLOEXEC) === 0;
  } catch {
    return false;
  }
}
