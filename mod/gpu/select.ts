/**
 * Which CDI devices `--gpus` means on this node: those of the node's one GPU
 * vendor (the kinds NVIDIA's and shoal's generators write), limited to the
 * job's GPUs inside a job (job.ts), and how the container numbers them.
 *
 * A GPU may be named twice in a spec, by index ("0") and by UUID
 * ("GPU-..."); both are the device whose nodes are the same, and are counted
 * as the index one, which the job's variables and the renumbering use.
 */
import { ConfigError, UsageError } from "../errors.ts";
import type { ResolvedDevice } from "../cdi/registry.ts";
import type { GpuRequest } from "./option.ts";
import type { JobGpus } from "./job.ts";

/** The CDI kinds `--gpus` maps to, by vendor. */
export const GPU_KINDS = { "nvidia.com/gpu": "NVIDIA", "amd.com/gpu": "AMD" } as const;
export type GpuKind = keyof typeof GPU_KINDS;

export interface GpuSelection {
  kind: GpuKind;
  /** The chosen GPUs as the node names them (the index where the spec has one), in the order asked. */
  host: string[];
  /** Each chosen GPU's index in the container: its place among the chosen in the node's order. */
  container: string[];
  /** Their qualified CDI names, for `applyCdiDevices`. */
  devices: string[];
}

const byIndex = (a: string, b: string) => Number(a) - Number(b);
const isIndex = (name: string) => /^\d+$/.test(name);

function nodesOf(d: ResolvedDevice): string {
  return (d.device.containerEdits.deviceNodes ?? []).map((n) => n.hostPath ?? n.path).sort()
    .join("\0");
}

function gpuKind(known: Map<string, ResolvedDevice>, option: string, dirs: string[]): GpuKind {
  const kinds = (Object.keys(GPU_KINDS) as GpuKind[]).filter((k) =>
    [...known.values()].some((d) => d.file.spec.kind === k)
  );
  if (kinds.length === 0) {
    throw new ConfigError(
      `${option}: no GPU CDI spec (nvidia.com/gpu or amd.com/gpu) is installed in ${
        dirs.join(", ")
      }`,
      { hint: "an admin makes one with 'shoal cdi generate' (docs/admin/configuration.md)" },
    );
  }
  if (kinds.length > 1) {
    throw new ConfigError(
      `${option}: this node has CDI specs for both NVIDIA and AMD GPUs, so --gpus cannot tell which`,
      { hint: "name them with --device nvidia.com/gpu=all or --device amd.com/gpu=0 instead" },
    );
  }
  return kinds[0]!;
}

/** The devices `request` names, checked against the node's specs and the job's GPUs. */
export function selectGpus(
  known: Map<string, ResolvedDevice>,
  request: GpuRequest,
  job: JobGpus | undefined,
  dirs: string[],
): GpuSelection {
  const kind = gpuKind(known, request.option, dirs);
  const gpus = new Map(
    [...known.values()]
      .filter((d) => d.file.spec.kind === kind && d.device.name !== "all")
      .map((d) => [d.device.name, d]),
  );
  const indices = [...gpus.keys()].filter(isIndex).sort(byIndex);
  const canonical = (name: string) => {
    const nodes = nodesOf(gpus.get(name)!);
    return isIndex(name) || nodes === ""
      ? name
      : indices.find((i) => nodesOf(gpus.get(i)!) === nodes) ?? name;
  };
  const listed = (names: string[]) => names.length > 0 ? names.join(", ") : "none";

  let allowed = indices.length > 0 ? indices : [...gpus.keys()];
  const where = job === undefined ? "on this node" : `in this job (${job.source}=${job.value})`;
  if (job !== undefined) {
    const missing = job.indices.filter((g) => !gpus.has(g));
    if (missing.length > 0) {
      throw new ConfigError(
        `${request.option}: ${job.source}=${job.value} names GPU ${
          missing[0]
        }, which the CDI specs in ${dirs.join(", ")} do not have (they have ${listed(allowed)})`,
        { hint: "the spec is not this node's: ask your admin to regenerate it" },
      );
    }
    allowed = [...new Set(job.indices.map(canonical))];
    if (allowed.length === 0) {
      throw new UsageError(`${request.option}: this job has no GPUs (${job.source}=${job.value})`, {
        hint: "ask Slurm for them (srun --gpus=N or --gres=gpu:N), or leave --gpus out",
      });
    }
  }

  let host: string[];
  if ("all" in request) host = allowed;
  else if ("count" in request) {
    if (request.count > allowed.length) {
      throw new UsageError(
        `${request.option}: only ${allowed.length} GPU${
          allowed.length === 1 ? "" : "s"
        } ${where}: ${listed(allowed)}`,
        { hint: `ask for at most ${allowed.length}, or for --gpus all` },
      );
    }
    host = allowed.slice(0, request.count);
  } else {
    host = [];
    for (const name of request.devices) {
      if (!gpus.has(name)) {
        throw new UsageError(`${request.option}: no GPU ${name} on this node`, {
          hint: `the GPUs there: ${listed([...gpus.keys()])}`,
        });
      }
      const gpu = canonical(name);
      if (!allowed.includes(gpu)) {
        throw new UsageError(`${request.option}: GPU ${name} is not one of this job's GPUs`, {
          hint: `this job may use ${listed(allowed)} (${job!.source}=${job!.value})`,
        });
      }
      if (!host.includes(gpu)) host.push(gpu);
    }
  }
  // The driver numbers the GPUs a container can open in the node's order.
  const order = [...host].sort((a, b) =>
    isIndex(a) && isIndex(b) ? byIndex(a, b) : Number(isIndex(b)) - Number(isIndex(a))
  );
  return {
    kind,
    host,
    container: host.map((g) => String(order.indexOf(g))),
    devices: host.map((g) => `${kind}=${g}`),
  };
}
