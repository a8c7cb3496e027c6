/**
 * Diagnostics for the engine. The engine never prints; it reports through a
 * Logger the CLI hands it, so a library user can route messages elsewhere.
 */

export type Verbosity = "quiet" | "normal" | "verbose" | "debug";

export interface Logger {
  readonly verbosity: Verbosity;
  /** Progress a user wants to see unless --quiet. */
  info(message: string): void;
  /** Shown with --verbose or --debug. */
  verbose(message: string): void;
  /** Shown with --debug only. */
  debug(message: string): void;
  /** Always shown: something the user should know about even when quiet. */
  warn(message: string): void;
}

const rank: Record<Verbosity, number> = { quiet: 0, normal: 1, verbose: 2, debug: 3 };

/** A logger writing to stderr, so stdout stays clean for data (tables, JSON). */
export function stderrLogger(verbosity: Verbosity): Logger {
  const enc = new TextEncoder();
  const write = (s: string) => Deno.stderr.writeSync(enc.encode(s + "\n"));
  const at = (level: Verbosity) => rank[verbosity] >= rank[level];
  return {
    verbosity,
    info: (m) => at("normal") && write(m),
    verbose: (m) => at("verbose") && write(m),
    debug: (m) => at("debug") && write(`debug: ${m}`),
    warn: (m) => write(`shoal: warning: ${m}`),
  };
}

/** A logger that drops everything; for library use and tests. */
export const silentLogger: Logger = {
  verbosity: "quiet",
  info: () => {},
  verbose: () => {},
  debug: () => {},
  warn: () => {},
};
