import { commandContext, formatOption } from "./context.ts";
import { printJson, printTable } from "./output.ts";
import { defineCommand } from "./parser.ts";
import { formatTime } from "./units.ts";

export const psCommand = defineCommand({
  name: "ps",
  args: [],
  options: { format: formatOption() },
  more: "Examples:\n  shoal ps\n  shoal ps --format json",
  async action({ options: opts, verbosity }) {
    const { loaded, logger } = await commandContext(verbosity);
    const { listRuns } = await import("../runtime/runs.ts");
    const runs = await listRuns(loaded, logger);
    const format = opts.format ?? loaded.preferences.format ?? "table";
    if (format === "json") return printJson(runs);
    printTable(
      ["NAME", "IMAGE", "PID", "STATUS", "CREATED"],
      runs.map((r) => [r.name, r.image, String(r.pid), r.status, formatTime(r.created)]),
    );
  },
});
