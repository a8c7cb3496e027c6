/**
 * `shoal run --gpus`: the GPUs chosen (select.ts) are applied as the CDI
 * devices they are, together with the run's `--device` CDI devices, then
 * the visibility variables are rewritten (visible.ts). A variable the user
 * set with -e or --env-file is theirs and stays as given.
 * Loaded only by runs that ask for GPUs.
 */
import type { OciSpec } from "../runtime/oci.ts";
import { applyCdiDevices, type CdiContext, setEnv } from "../cdi/apply.ts";
import { readDevices, type ResolvedDevice } from "../cdi/registry.ts";
import type { GpuRequest } from "./option.ts";
import { jobGpus } from "./job.ts";
import { selectGpus } from "./select.ts";
import { visibilityEnv } from "./visible.ts";

export interface GpuRun {
  gpus: GpuRequest;
  /** The run's `--device vendor/class=name` devices. */
  cdi: string[];
  /** The caller's environment, where a job's GPUs are found. */
  hostEnv: Record<string, string>;
  /** Variables set by -e or --env-file. */
  userSet: string[];
}

export async function applyGpus(
  spec: OciSpec,
  run: GpuRun,
  ctx: CdiContext,
  warnings: string[],
): Promise<ResolvedDevice[]> {
  const known = await readDevices(ctx.dirs, ctx.checked);
  const selection = selectGpus(known, run.gpus, jobGpus(run.hostEnv), ctx.dirs);
  const devices = await applyCdiDevices(
    spec,
    [...run.cdi, ...selection.devices],
    ctx,
    warnings,
    known,
  );
  for (const [name, value] of Object.entries(visibilityEnv(selection, spec.process.env))) {
    if (!run.userSet.includes(name)) setEnv(spec, `${name}=${value}`);
  }
  return devices;
}
