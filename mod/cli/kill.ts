import { commandContext } from "./context.ts";
import { printLine } from "./output.ts";
import { defineCommand } from "./parser.ts";

export const killCommand = defineCommand({
  name: "kill",
  args: [
    { name: "NAME", help: "the container's name (see 'shoal ps')" },
    {
      name: "SIGNAL",
      help: "signal name or number: TERM, INT, HUP, USR1, USR2, QUIT, KILL",
      optional: true,
    },
  ],
  options: {},
  more: `
KILL ends the container and everything it started; other signals reach its
main process, which may handle them.

Examples:
  shoal kill happy_curie
  shoal kill happy_curie TERM`,
  async action({ args: [name, signal], verbosity }) {
    const { loaded, logger } = await commandContext(verbosity);
    const { parseSignal, signalRun } = await import("../runtime/runs.ts");
    await signalRun(loaded, name!, parseSignal(signal ?? "KILL"), logger);
    if (logger.verbosity !== "quiet") printLine(name);
  },
});
