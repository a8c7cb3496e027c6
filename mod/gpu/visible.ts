/**
 * The GPU visibility variables inside a container given GPUs by `--gpus`,
 * as Sarus rewrites them (ConfigsMerger::setNvidiaEnvironmentVariables).
 *
 * The container holds the device nodes of its GPUs only, so CUDA and ROCm
 * there see them as 0..n-1 in the node's order; a host value such as
 * CUDA_VISIBLE_DEVICES=3,1 (from Slurm, or the image) would name GPUs that
 * are not there. The variable that selects is set to each chosen GPU's
 * number inside, in the order asked (3,1 becomes 1,0). For AMD, ROCm's
 * HIP applies HIP_VISIBLE_DEVICES, CUDA_VISIBLE_DEVICES and
 * GPU_DEVICE_ORDINAL again on top of ROCR_VISIBLE_DEVICES, so those, where
 * set, pass all n through unchanged. NVIDIA_VISIBLE_DEVICES names the
 * node's GPUs, as Docker and Sarus set it: it is read by NVIDIA's runtime
 * hook, which runs outside the container.
 */
import type { GpuSelection } from "./select.ts";

/** Each variable to set, from the container's current environment entries. */
export function visibilityEnv(selection: GpuSelection, env: string[]): Record<string, string> {
  const has = (name: string) => env.some((e) => e.startsWith(`${name}=`));
  const inside = selection.container.join(",");
  const out: Record<string, string> = {};
  if (selection.kind === "nvidia.com/gpu") {
    out.CUDA_VISIBLE_DEVICES = inside;
    out.NVIDIA_VISIBLE_DEVICES = selection.host.join(",");
    if (has("GPU_DEVICE_ORDINAL")) out.GPU_DEVICE_ORDINAL = inside;
  } else {
    out.ROCR_VISIBLE_DEVICES = inside;
    const all = selection.container.map((_, i) => String(i)).join(",");
    for (const name of ["HIP_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL"]) {
      if (has(name)) out[name] = all;
    }
  }
  return out;
}
