import type { Command } from "@commander-js/extra-typings";
import { listRuns } from "../runtime/runs.ts";
import { addGlobalOptions, commandContext, formatOption } from "./context.ts";
import { printJson, printTable } from "./output.ts";
import { formatTime } from "./units.ts";

export function registerPs(program: Command): void {
  addGlobalOptions(
    program.command("ps")
      .description("list your running containers")
      .addOption(formatOption())
      .addHelpText("after", "\nExamples:\n  shoal ps\n  shoal ps --format json"),
  ).action(async (opts, cmd) => {
    const { loaded } = await commandContext(cmd);
    const runs = await listRuns(loaded);
    const format = opts.format ?? loaded.preferences.format ?? "table";
    if (format === "json") return printJson(runs);
    printTable(
      ["NAME", "IMAGE", "PID", "STATUS", "CREATED"],
      runs.map((r) => [r.name, r.image, String(r.pid), r.status, formatTime(r.created)]),
    );
  });
}
