/** shoal's entry point: run the command line, render an escaped error once, exit. */
import { holdSignals } from "./mod/sys/signals.ts";
import { runProgram } from "./mod/cli/program.ts";
import { debugRequested, programArgs } from "./mod/cli/parser.ts";
import { exitCodeOf, renderError } from "./mod/errors.ts";

async function main(): Promise<number> {
  const args = programArgs();
  try {
    return await runProgram(args);
  } catch (err) {
    console.error(renderError(err, debugRequested(args)));
    return exitCodeOf(err);
  }
}

// First of all: SIGUSR1 must never reach Deno (it opens an inspector; see mod/sys/signals.ts).
holdSignals();
Deno.exit(await main());
