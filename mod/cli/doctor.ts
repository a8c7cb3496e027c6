import type { DoctorReport } from "../doctor/report.ts";
import { ExitStatus } from "../errors.ts";
import { formatOption } from "./context.ts";
import { printJson, printLine, printTable } from "./output.ts";
import { defineCommand } from "./parser.ts";

const STATUS = { ok: "ok", warn: "WARN", fail: "FAIL" } as const;

export const doctorCommand = defineCommand({
  name: "doctor",
  args: [],
  options: { format: formatOption() },
  more: `
Exits 0 when you can run containers, 1 when you cannot; each failed check
comes with the fix for your admin.

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

function printReport(report: DoctorReport): void {
  const { user } = report;
  printLine(`shoal doctor for ${user.name} (uid ${user.uid}, gid ${user.gid})`);
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
    printLine("To fix (as the admin):");
    for (const [fix, titles] of fixes) printLine(`  ${titles.join(", ")}: ${fix}`);
  }
  printLine();
  if (report.runPath !== null) {
    printLine(`You can run containers: ${report.runPath} path; ${report.runPathReason}.`);
  } else {
    printLine(
      `You cannot run containers here: ${report.runPathReason}. ` +
        "Ask your admin to apply the fixes above.",
    );
  }
}
