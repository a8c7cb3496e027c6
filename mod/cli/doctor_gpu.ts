import type { GpuReport } from "../doctor/gpu.ts";
import { printLine, printTable } from "./output.ts";

const STATUS = { ok: "ok", warn: "WARN", fail: "FAIL" } as const;

/** doctor's GPU section: the GPUs, the checks of drivers and CDI specs, and their fixes. */
export function printGpuSection(gpu: GpuReport): void {
  printLine();
  printLine("GPUs and CDI devices:");
  const rows = [
    ...(gpu.nvidia?.gpus ?? []).map((g) => [
      `nvidia.com/gpu=${g.index}`,
      g.uuid ?? "(UUID not known yet)",
      `${g.model}, PCI ${g.busId}, /dev/nvidia${g.minor}`,
    ]),
    ...(gpu.amd?.gpus ?? []).map((g) => [
      `amd.com/gpu=${g.index}`,
      `gpu_id ${g.gpuId}`,
      `/dev/dri/renderD${g.renderMinor}${g.card === null ? "" : `, ${g.card}`}`,
    ]),
  ];
  if (rows.length > 0) printTable(["GPU", "ID", "DETAIL"], rows);
  printTable(
    ["CHECK", "STATUS", "DETAIL"],
    gpu.checks.map((c) => [c.title, STATUS[c.status], c.detail]),
  );
  const files = gpu.specs.length === 0
    ? `no CDI spec files in ${gpu.specDirs.join(", ")}`
    : `${gpu.specs.length} CDI spec files in ${gpu.specDirs.join(", ")} (shoal cdi list)`;
  printLine(files);
  const job = gpu.jobGpus;
  printLine(
    job === null
      ? "GPUs of this job: all of the node's (no job GPU variable is set)"
      : `GPUs of this job: ${job.indices.join(", ") || "none"} (${job.source}=${job.value})`,
  );
  const fixes = gpu.checks.filter((c) => c.status !== "ok" && c.fix !== undefined);
  if (fixes.length > 0) {
    printLine("To fix:");
    for (const c of fixes) printLine(`  ${c.title}: ${c.fix}`);
  }
}
