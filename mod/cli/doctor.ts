import type { DoctorReport, RunVerdict } from "../doctor/report.ts";
import type { HpcReport } from "../doctor/hpc.ts";
import { ExitStatus } from "../errors.ts";
import { formatOption } from "./context.ts";
import { printJson, printLine, printTable } from "./output.ts";
import { defineCommand } from "./parser.ts";
import { printGpuSection } from "./doctor_gpu.ts";

const STATUS = { ok: "ok", warn: "WARN", fail: "FAIL" } as const;

export const doctorCommand = defineCommand({
  name: "doctor",
  args: [],
  options: { format: formatOption() },
  more: `
Says what \`shoal run\` does for you, as yourself and with --root, from the
cluster store (where the site has one), your repository and the site's
centralized one, and why; each failed check comes with its fix. Exits 0 when
\`shoal run IMAGE\` (as yourself, with an image you pulled) works, 1 when it
does not.

Examples:
  shoal doctor
  shoal doctor --format json`,
  async action({ options: opts }) {
    const [{ loadForDoctor }, { diagnose }] = await Promise.all([
      import("../doctor/config.ts"),
      import("../doctor/diagnose.ts"),
    ]);
    const { loaded, problem } = await loadForDoctor();
    const report = await diagnose(loaded, { configProblem: problem });
    if ((opts.format ?? loaded.preferences.format) === "json") printJson(report);
    else printReport(report);
    if (!report.canRun) throw new ExitStatus(1);
  },
});

function printHpc(hpc: HpcReport): void {
  printLine();
  printLine("HPC:");
  const s = hpc.slurm;
  printLine(
    s === null
      ? "  Slurm: not in a Slurm job"
      : `  Slurm: job ${s.jobId}, step ${s.stepId ?? "none (batch script or salloc)"}, node ${
        s.node ?? "?"
      }, local rank ${s.localRank ?? "?"}`,
  );
  printLine(`  Launcher interface: ${hpc.pmi.flavour ?? "none"} (${hpc.pmi.detail})`);
  if (hpc.mpi.length === 0) {
    printLine("  Host MPI for --mpi: none configured (the site config's mpi section)");
  } else {
    printLine("  Host MPI for --mpi:");
    printTable(
      ["TYPE", "LIBRARY", "SONAME", "IMAGE GLIBC", "STATUS"],
      hpc.mpi.map((m) => [
        `${m.name}${m.default ? " (default)" : ""}`,
        m.library,
        m.soname ?? "-",
        m.glibcNeeded === null ? "-" : `>= ${m.glibcNeeded}`,
        m.problem ?? `ok, ${m.libraries} files injected`,
      ]),
    );
  }
  const hooks = hpc.hooks.map((h) => `${h.name} (${h.stages.join(", ")})`);
  printLine(`  OCI hooks: ${hooks.length === 0 ? "none installed" : hooks.join("; ")}`);
  for (const e of hpc.hookErrors) printLine(`  unusable hook: ${e}`);
  const share = hpc.ranksShareContainer === null ? "-" : hpc.ranksShareContainer ? "yes" : "no";
  printLine(`  Ranks share a container on this node: ${share} (${hpc.ranksDetail})`);
}

const IDENTITY = { self: "as yourself", root: "with --root" } as const;
const REPOSITORY = {
  store: "the cluster store",
  local: "your repository",
  centralized: "the centralized repository",
} as const;

function describe(run: RunVerdict): string {
  return run.runPath === null ? `no run: ${run.reason}` : `${run.runPath} path: ${run.reason}`;
}

function printReport(report: DoctorReport): void {
  const { user, install } = report;
  printLine(
    `shoal doctor for ${user.name} (uid ${user.uid}, gid ${user.gid}), ` +
      `${install.kind} install at ${install.prefix}`,
  );
  printLine();
  printTable(
    ["CHECK", "STATUS", "DETAIL"],
    report.checks.map((c) => [c.title, STATUS[c.status], c.detail]),
  );
  // Checks sharing a fix (one usermod adds both subuids and subgids) list it once.
  const fixes = new Map<string, string[]>();
  for (const c of report.checks) {
    if (c.status !== "ok" && c.fix !== undefined) {
      fixes.set(c.fix, [...fixes.get(c.fix) ?? [], c.title]);
    }
  }
  if (fixes.size > 0) {
    printLine();
    printLine("To fix:");
    for (const [fix, titles] of fixes) printLine(`  ${titles.join(", ")}: ${fix}`);
  }
  printLine();
  printLine("What `shoal run` does for you:");
  printTable(
    ["RUN", "FROM", "VERDICT"],
    report.runs.map((r) => [IDENTITY[r.identity], REPOSITORY[r.repository], describe(r)]),
  );
  // What the checks' fixes above do not already say, each once with the runs it changes.
  const more = new Map<string, string[]>();
  for (const r of report.runs) {
    for (const f of r.fixes.filter((f) => !fixes.has(f))) {
      more.set(f, [...more.get(f) ?? [], `${IDENTITY[r.identity]}, ${REPOSITORY[r.repository]}`]);
    }
  }
  if (more.size > 0) {
    printLine();
    printLine("To change these verdicts:");
    for (const [fix, runs] of more) printLine(`  ${runs.join("; ")}: ${fix}`);
  }
  printGpuSection(report.gpu);
  printHpc(report.hpc);
  printLine();
  const [plain] = report.runs;
  if (plain!.runPath !== null) {
    // The table above says why; the last line is the answer alone.
    printLine(
      `You can run containers: ${plain!.runPath} path, as yourself from ${
        REPOSITORY[plain!.repository]
      }.`,
    );
    return;
  }
  const others = report.runs.filter((r) => r.runPath !== null)
    .map((r) => `${IDENTITY[r.identity]} from ${REPOSITORY[r.repository]}`);
  printLine(
    `You cannot run containers here: ${plain!.reason}. ` +
      (others.length > 0 ? `You can run ${others.join(", ")}. ` : "") +
      `To fix: ${plain!.fixes.join("; ")}.`,
  );
}
