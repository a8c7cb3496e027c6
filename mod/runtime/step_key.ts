/**
 * Which runs share one container: the ranks of one job step on one node.
 * MPI ranks in two containers (two sibling user namespaces) cannot open each
 * other's /proc/PID/fd nor use CMA (process_vm_readv), which MPICH's UCX
 * needs; ranks in one container can (docs/hpc.md). So, as Pyxis does, every
 * rank of a step on a node joins one container (join.ts), found by a key:
 *
 * - `--join KEY`: the user's own, for any launcher (or none);
 * - Slurm: SLURM_JOB_ID.SLURM_STEP_ID (and its srun's SLURM_SRUN_COMM_PORT),
 *   when the step has more than one task
 *   on this node (SLURM_STEP_TASKS_PER_NODE, e.g. "4(x2),1", at this node's
 *   index SLURM_NODEID: what srun gives each task);
 * - MPICH's hydra: its proxy on this node (the hydra_pmi_proxy process the
 *   rank descends from; hydra sets no job id), when MPI_LOCALNRANKS > 1;
 * - Open MPI / PMIx: PMIX_NAMESPACE, when OMPI_COMM_WORLD_LOCAL_SIZE (or
 *   PMIX_LOCAL_SIZE) > 1.
 *
 * A single rank on its node gets no key and runs a container of its own, as
 * any run. The key is a run directory's business only: the run base is the
 * user's and per node, and the lock's name is a digest of the key.
 */

export interface StepKey {
  key: string;
  /** What gave it: "join" (--join), "slurm", "hydra" or "pmix". */
  source: "join" | "slurm" | "hydra" | "pmix";
  /** Ranks the launcher put on this node; undefined for --join. */
  localRanks?: number;
}

/**
 * The key of the container this run joins, from its environment `env` and
 * `--join` (`join`); undefined when it runs alone. `hydraProxy` finds the
 * hydra proxy this process descends from (its pid and start time).
 */
export function stepKey(
  env: Record<string, string | undefined>,
  join?: string,
  hydraProxy: () => string | undefined = findHydraProxy,
): StepKey | undefined {
  if (join !== undefined) return { key: `join:${join}`, source: "join" };
  const job = env.SLURM_JOB_ID;
  const step = env.SLURM_STEP_ID;
  if (job !== undefined && step !== undefined) {
    const local = slurmLocalTasks(env.SLURM_STEP_TASKS_PER_NODE, env.SLURM_NODEID);
    // The step's srun (its port) too: a job id alone is reused when a cluster starts afresh.
    const srun = env.SLURM_SRUN_COMM_PORT ?? "";
    return local !== undefined && local > 1
      ? { key: `slurm:${job}.${step}:${srun}`, source: "slurm", localRanks: local }
      : undefined;
  }
  const hydra = count(env.MPI_LOCALNRANKS);
  if (hydra !== undefined && env.PMI_RANK !== undefined) {
    const proxy = hydra > 1 ? hydraProxy() : undefined;
    return proxy === undefined
      ? undefined
      : { key: `hydra:${proxy}`, source: "hydra", localRanks: hydra };
  }
  const pmix = count(env.OMPI_COMM_WORLD_LOCAL_SIZE ?? env.PMIX_LOCAL_SIZE);
  if (env.PMIX_NAMESPACE !== undefined && pmix !== undefined) {
    return pmix > 1
      ? { key: `pmix:${env.PMIX_NAMESPACE}`, source: "pmix", localRanks: pmix }
      : undefined;
  }
  return undefined;
}

function count(text: string | undefined): number | undefined {
  return text !== undefined && /^\d+$/.test(text) ? Number(text) : undefined;
}

/**
 * Tasks on node `nodeId` of a step from Slurm's compressed list: "2(x3),1"
 * is 2, 2, 2, 1.
 */
export function slurmLocalTasks(
  perNode: string | undefined,
  nodeId: string | undefined,
): number | undefined {
  const index = count(nodeId);
  if (perNode === undefined || index === undefined) return undefined;
  let at = 0;
  for (const part of perNode.split(",")) {
    const m = part.trim().match(/^(\d+)(?:\(x(\d+)\))?$/);
    if (m === null) return undefined;
    at += m[2] === undefined ? 1 : Number(m[2]);
    if (index < at) return Number(m[1]);
  }
  return undefined;
}

/** Ancestors looked at for hydra's proxy: a rank is its child or a wrapper's. */
const MAX_ANCESTORS = 8;

/** "PID.STARTTIME" of the hydra_pmi_proxy this process descends from. */
function findHydraProxy(): string | undefined {
  let pid = Deno.pid;
  for (let i = 0; i < MAX_ANCESTORS; i++) {
    let stat: string;
    try {
      stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    } catch {
      return undefined;
    }
    const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (name === "hydra_pmi_proxy" && i > 0) return `${pid}.${fields[19]}`;
    pid = Number(fields[1]);
    if (!(pid > 1)) return undefined;
  }
  return undefined;
}
