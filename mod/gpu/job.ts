/**
 * The GPUs this process was given by its batch system, from its
 * environment. `shoal run --gpus` inside a job takes only these, and
 * `shoal doctor` shows them.
 *
 * The first of these that is set wins:
 * - SLURM_STEP_GPUS: the GPUs of this job step (srun), by the node's index;
 * - SLURM_JOB_GPUS: the GPUs of the whole job on this node, by the node's index;
 * - CUDA_VISIBLE_DEVICES, ROCR_VISIBLE_DEVICES, GPU_DEVICE_ORDINAL: what CUDA
 *   and ROCm themselves obey.
 * Slurm's own variables come first because they always name the node's
 * GPUs, while Slurm writes the visibility variables relative to the job's
 * own GPUs when its cgroups hide the others (ConstrainDevices=yes: a job
 * given GPUs 2 and 3 reads CUDA_VISIBLE_DEVICES=0,1). The visibility
 * variables count where nothing of Slurm's is set: another batch system, a
 * prolog, or a user narrowing the set by hand.
 */

export const JOB_GPU_VARIABLES = [
  "SLURM_STEP_GPUS",
  "SLURM_JOB_GPUS",
  "CUDA_VISIBLE_DEVICES",
  "ROCR_VISIBLE_DEVICES",
  "GPU_DEVICE_ORDINAL",
] as const;

export interface JobGpus {
  /** The variable the GPUs come from. */
  source: typeof JOB_GPU_VARIABLES[number];
  /** Its value, for messages. */
  value: string;
  /** The GPUs as the node names them: indices ("0"), or NVIDIA UUIDs ("GPU-..."); may be empty. */
  indices: string[];
}

/** `0,2`, `0-3` (a node has far fewer than 10000 GPUs), `GPU-<uuid>,...`; Slurm's `NoDevFiles` (a job with other GRES only) is none. */
function gpuList(value: string): string[] {
  if (value.trim() === "NoDevFiles") return [];
  const out: string[] = [];
  for (const item of value.split(",").map((s) => s.trim()).filter((s) => s !== "")) {
    const range = item.match(/^(\d{1,4})-(\d{1,4})$/);
    if (range === null) out.push(item);
    else for (let i = Number(range[1]); i <= Number(range[2]); i++) out.push(String(i));
  }
  return [...new Set(out)];
}

/** The GPUs the environment gives this process; undefined when it says nothing (all of the node's). */
export function jobGpus(env: Record<string, string | undefined>): JobGpus | undefined {
  for (const source of JOB_GPU_VARIABLES) {
    const value = env[source];
    if (value !== undefined) return { source, value, indices: gpuList(value) };
  }
  return undefined;
}
