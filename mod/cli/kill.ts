import type { Command } from "@commander-js/extra-typings";
import { parseSignal, signalRun } from "../runtime/runs.ts";
import { addGlobalOptions, commandContext } from "./context.ts";
import { printLine } from "./output.ts";

export function registerKill(program: Command): void {
  addGlobalOptions(
    program.command("kill")
      .description("send a signal to one of your running containers (default KILL)")
      .argument("NAME", "the container's name (see 'shoal ps')")
      .argument("[SIGNAL]", "signal name or number: TERM, INT, HUP, USR1, USR2, QUIT, KILL")
      .addHelpText(
        "after",
        "\nKILL ends the container and everything it started; other signals reach its\n" +
          "main process, which may handle them.\n\nExamples:\n  shoal kill happy_curie\n" +
          "  shoal kill happy_curie TERM",
      ),
  ).action(async (name, signal, _opts, cmd) => {
    const { loaded, logger } = await commandContext(cmd);
    const sig = parseSignal(signal ?? "KILL");
    await signalRun(loaded, name, sig);
    if (logger.verbosity !== "quiet") printLine(name);
  });
}
