/**
 * What every command shares: the global flags (accepted before or after the
 * command name), the logger they select, and the output format.
 */
import { Command, Option } from "@commander-js/extra-typings";
import type { Verbosity } from "../log.ts";
import { type OutputFormat, outputFormats } from "../config/schema.ts";

interface GlobalFlags {
  debug?: boolean;
  verbose?: boolean;
  quiet?: boolean;
}

// deno-lint-ignore no-explicit-any
export function addGlobalOptions<C extends Command<any, any, any>>(cmd: C): C {
  cmd.option("--debug", "show debug messages and the cause of errors");
  cmd.option("--verbose", "show more about what shoal does");
  cmd.option("-q, --quiet", "show only errors");
  return cmd;
}

/** Global flags of a command: its own merged over the program's. */
// deno-lint-ignore no-explicit-any
export function verbosityOf(cmd: Command<any, any, any>): Verbosity {
  const flags = cmd.optsWithGlobals() as GlobalFlags;
  if (flags.debug) return "debug";
  if (flags.quiet) return "quiet";
  if (flags.verbose) return "verbose";
  return "normal";
}

/** Whether --debug was given anywhere on the command line; read before parsing finishes. */
export function debugRequested(argv: string[]): boolean {
  const end = argv.indexOf("--");
  return (end < 0 ? argv : argv.slice(0, end)).includes("--debug");
}

export function formatOption(): Option<"--format <FORMAT>", undefined, undefined, OutputFormat> {
  return new Option("--format <FORMAT>", "output format").choices(outputFormats);
}
