/**
 * `--gpus` as Docker users write it: `all`, a count, `device=0,2` or
 * `device=GPU-<uuid>` (Docker's CSV quoting, `"device=0,2"`, too). Parsed at
 * the command line, before anything is read; which GPUs these are is
 * decided by the run (select.ts), against the node's CDI specs and the job.
 */
import { UsageError } from "../errors.ts";
import { deviceNameProblem } from "../cdi/name.ts";

export type GpuRequest =
  | { option: string; all: true }
  | { option: string; count: number }
  | { option: string; devices: string[] };

export function parseGpusOption(value: string): GpuRequest {
  const option = `--gpus ${value}`;
  // Docker reads the value as one CSV field, so `"device=0,2"` keeps its comma.
  const text = /^".*"$/.test(value) ? value.slice(1, -1) : value;
  const wrong = (why: string) =>
    new UsageError(`${option}: ${why}`, {
      hint: "give all, a count (--gpus 2), device=0,2 or device=GPU-<uuid>",
    });
  if (text === "all") return { option, all: true };
  if (/^\d+$/.test(text)) {
    const count = Number(text);
    if (count === 0) throw wrong("a count of GPUs starts at 1 (leave --gpus out for none)");
    return { option, count };
  }
  if (!text.startsWith("device=")) throw wrong("not a GPU selection");
  const devices = text.slice("device=".length).split(",").map((d) => d.trim());
  for (const d of devices) {
    if (d === "") throw wrong("an empty device in the list");
    const problem = deviceNameProblem(d);
    if (problem !== undefined) throw wrong(problem);
  }
  return { option, devices: [...new Set(devices)] };
}
