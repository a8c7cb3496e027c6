/**
 * `shoal run`'s own entry point, which the installed launcher starts when the
 * command is `run`: the program of that one command, its definition imported
 * statically. Bundled apart from main.ts, a run then loads a dozen files
 * instead of three dozen: with every command's chunks in one bundle, a run's
 * modules were spread over all the chunks the commands share, and each file
 * Deno loads costs ~0.1 ms of every start (docs/design/architecture.md,
 * "Start-up rules").
 */
import { start } from "./mod/cli/start.ts";
import { runCommand } from "./mod/cli/run.ts";
import { PROGRAM_SUMMARY, RUN_SUMMARY } from "./mod/cli/summaries.ts";
import { VERSION } from "./mod/version.ts";

await start({
  summary: PROGRAM_SUMMARY,
  version: VERSION,
  commands: [{ name: "run", summary: RUN_SUMMARY, load: () => Promise.resolve(runCommand) }],
  more: "",
  foreign: {},
});
