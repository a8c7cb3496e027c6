/**
 * `shoal doctor`'s HPC section: the Slurm job step it runs in (if any), the
 * process-management interface a launcher handed it, the site's host MPI
 * types for `--mpi` with each library's ABI and what it needs of an image's
 * glibc, and the installed OCI hooks. Plain data; the CLI prints it.
 */
import { stepKey } from "../runtime/step_key.ts";
import type { LoadedConfig } from "../config/load.ts";
import { ShoalError } from "../errors.ts";
import { readHooks } from "../runtime/hooks.ts";
import { hostClosure } from "../mpi/closure.ts";
import { glibcNeed } from "../mpi/checks.ts";

export interface HpcReport {
  /** The Slurm job step seen in the environment; null outside Slurm. */
  slurm:
    | { jobId: string; stepId: string | null; node: string | null; localRank: string | null }
    | null;
  /**
   * The launcher's interface: "pmi" (PMI_FD: srun --mpi=pmi2, MPICH's hydra),
   * "pmix" (PMIX_RANK: srun --mpi=pmix, PRRTE), or null; `detail` names the
   * variables that say so.
   */
  pmi: { flavour: "pmi" | "pmix" | null; detail: string };
  /** The site's `mpi.types`, the default one first. */
  mpi: MpiTypeReport[];
  hooks: { name: string; stages: string[]; path: string }[];
  /** Hook files every run refuses until they are fixed. */
  hookErrors: string[];
  /**
   * Whether the ranks of this job step on this node share one container
   * (runtime/step_key.ts): null outside a job step, where nothing is shared
   * until a launcher starts ranks; `ranksDetail` says why.
   */
  ranksShareContainer: boolean | null;
  ranksDetail: string;
}

export interface MpiTypeReport {
  name: string;
  default: boolean;
  /** The MPI library (the type's first) as configured. */
  library: string;
  /** Its SONAME, when it and its closure load. */
  soname: string | null;
  /** The newest GLIBC_x.y the injected libraries need: an image's glibc must have it. */
  glibcNeeded: string | null;
  /** Libraries and plugin files injected. */
  libraries: number;
  /** Why `--mpi` with this type would fail on this node; null when it would not. */
  problem: string | null;
}

function mpiTypes(config: LoadedConfig["config"]): MpiTypeReport[] {
  const names = Object.keys(config.mpi.types);
  const chosen = config.mpi.default ?? names[0];
  return [...names].sort((a, b) => Number(b === chosen) - Number(a === chosen)).map((name) => {
    const type = config.mpi.types[name]!;
    const base = { name, default: name === chosen, library: type.libraries[0]! };
    try {
      const closure = hostClosure(
        [...type.libraries, ...type.dependencies],
        type.pluginDirs.map((p) => p.source),
        type.libraryPath,
      );
      const [mpi] = closure.libraries.values();
      const need = glibcNeed([...closure.libraries.values(), ...closure.plugins]);
      return {
        ...base,
        soname: mpi!.soname,
        glibcNeeded: need?.version ?? null,
        libraries: closure.libraries.size + closure.plugins.length,
        problem: null,
      };
    } catch (err) {
      if (!(err instanceof ShoalError)) throw err;
      return { ...base, soname: null, glibcNeeded: null, libraries: 0, problem: err.message };
    }
  });
}

function pmi(env: Record<string, string>): HpcReport["pmi"] {
  if (env.PMIX_RANK !== undefined) {
    const tmp = env.PMIX_SERVER_TMPDIR;
    return {
      flavour: "pmix",
      detail: `PMIX_RANK=${env.PMIX_RANK}${tmp ? `, PMIX_SERVER_TMPDIR=${tmp}` : ""}`,
    };
  }
  if (env.PMI_FD !== undefined) {
    return { flavour: "pmi", detail: `PMI_FD=${env.PMI_FD}, PMI_RANK=${env.PMI_RANK ?? "?"}` };
  }
  return { flavour: null, detail: "no PMI_FD or PMIX_RANK: not started by an MPI launcher" };
}

function hooks(loaded: LoadedConfig) {
  try {
    return readHooks(loaded.paths.hooksDir, loaded.config.securityChecks);
  } catch (err) {
    if (!(err instanceof ShoalError)) throw err;
    return { hooks: [], errors: [err] };
  }
}

export function hpcReport(loaded: LoadedConfig, env: Record<string, string>): HpcReport {
  const listing = hooks(loaded);
  return {
    slurm: env.SLURM_JOB_ID === undefined ? null : {
      jobId: env.SLURM_JOB_ID,
      stepId: env.SLURM_STEP_ID ?? null,
      node: env.SLURMD_NODENAME ?? null,
      localRank: env.SLURM_LOCALID ?? null,
    },
    pmi: pmi(env),
    mpi: mpiTypes(loaded.config),
    hooks: listing.hooks.map((h) => ({ name: h.name, stages: h.stages, path: h.hook.path })),
    hookErrors: listing.errors.map((e) => e.message),
    ...ranks(env),
  };
}

/** What stepKey decides for a rank started with this environment. */
function ranks(
  env: Record<string, string>,
): Pick<HpcReport, "ranksShareContainer" | "ranksDetail"> {
  const key = stepKey(env);
  if (key !== undefined) {
    return {
      ranksShareContainer: true,
      ranksDetail: `the ${key.localRanks} ranks of this ${key.source} step on this node share one`,
    };
  }
  const inStep = env.SLURM_STEP_ID !== undefined || env.MPI_LOCALNRANKS !== undefined ||
    env.PMIX_NAMESPACE !== undefined;
  return inStep
    ? { ranksShareContainer: false, ranksDetail: "this step has one rank on this node" }
    : {
      ranksShareContainer: null,
      ranksDetail:
        "not in a job step; the ranks of a Slurm, hydra or PMIx step on one node share one",
    };
}
