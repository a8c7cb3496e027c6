/**
 * What commands share: the options several take, and the configuration and
 * logger a command hands the engine.
 */
import { type Logger, stderrLogger, type Verbosity } from "../log.ts";
import { UsageError } from "../errors.ts";
import { loadConfig, type LoadedConfig } from "../config/load.ts";
import { outputFormats } from "../config/choices.ts";
import { choice, parsed } from "./parser.ts";

export function formatOption() {
  return choice("--format <FORMAT>", outputFormats, "output format: table or json");
}

/** `--tls-verify[=BOOL]`, as podman and skopeo spell it. */
export function tlsVerifyOption() {
  return parsed(
    "--tls-verify [BOOL]",
    "verify the registry's TLS certificate (false: also allow plain HTTP)",
    (v) => {
      if (v === undefined || /^(true|1|yes)$/i.test(v)) return true;
      if (/^(false|0|no)$/i.test(v)) return false;
      throw new UsageError(`--tls-verify takes true or false, not '${v}'`);
    },
  );
}

export interface CommandContext {
  loaded: LoadedConfig;
  logger: Logger;
}

/** The configuration (security-checked) and logger a command hands the engine. */
export async function commandContext(verbosity: Verbosity): Promise<CommandContext> {
  return { loaded: await loadConfig(), logger: stderrLogger(verbosity) };
}
