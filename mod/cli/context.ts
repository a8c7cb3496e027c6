/**
 * What every command shares: the global flags (accepted before or after the
 * command name), the logger they select, and the output format.
 */
import { Command, Option } from "@commander-js/extra-typings";
import { type Logger, stderrLogger, type Verbosity } from "../log.ts";
import { UsageError } from "../errors.ts";
import { loadConfig, type LoadedConfig } from "../config/load.ts";
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

/** `--tls-verify[=BOOL]`, as podman and skopeo spell it. */
export function tlsVerifyOption(): Option<"--tls-verify [BOOL]", undefined, undefined, boolean> {
  return new Option(
    "--tls-verify [BOOL]",
    "verify the registry's TLS certificate (false: also allow plain HTTP)",
  ).argParser((v: string) => {
    if (/^(true|1|yes)$/i.test(v)) return true;
    if (/^(false|0|no)$/i.test(v)) return false;
    throw new UsageError(`--tls-verify takes true or false, not '${v}'`);
  }) as Option<"--tls-verify [BOOL]", undefined, undefined, boolean>;
}

export interface CommandContext {
  loaded: LoadedConfig;
  logger: Logger;
}

/** The configuration (security-checked) and logger a command hands the engine. */
// deno-lint-ignore no-explicit-any
export async function commandContext(cmd: Command<any, any, any>): Promise<CommandContext> {
  const logger = stderrLogger(verbosityOf(cmd));
  return { loaded: await loadConfig(), logger };
}
