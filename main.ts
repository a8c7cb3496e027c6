/** shoal's entry point: run the command line, render an escaped error once, exit. */
import { runProgram } from "./mod/cli/program.ts";
import { debugRequested } from "./mod/cli/parser.ts";
import { exitCodeOf, renderError } from "./mod/errors.ts";

async function main(): Promise<number> {
  try {
    return await runProgram(Deno.args);
  } catch (err) {
    console.error(renderError(err, debugRequested(Deno.args)));
    return exitCodeOf(err);
  }
}

Deno.exit(await main());
