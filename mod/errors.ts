/**
 * The error hierarchy. Engine code throws these at the point of failure; main.ts
 * renders them once, as one line on stderr, and exits with `exitCode`.
 */

export interface ErrorOptions {
  /** What the user can do about it; printed after the message. */
  hint?: string;
  cause?: unknown;
}

export class ShoalError extends Error {
  readonly exitCode: number = 1;
  readonly hint: string | undefined;

  constructor(message: string, options: ErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.hint = options.hint;
  }
}

/** Bad command line: unknown command or option, malformed value. Exit 2. */
export class UsageError extends ShoalError {
  override readonly exitCode: number = 2;
}

/** An invalid configuration file. */
export class ConfigError extends ShoalError {}

/** A failed security check: ownership or permissions of a trusted file. */
export class SecurityError extends ShoalError {}

/** Renders an error as the single line users see, plus the cause chain with `debug`. */
export function renderError(err: unknown, debug: boolean): string {
  const lines: string[] = [];
  if (err instanceof ShoalError) {
    lines.push(`shoal: error: ${err.message}${err.hint ? ` (${err.hint})` : ""}`);
  } else if (err instanceof Error) {
    lines.push(`shoal: error: ${err.message}`);
  } else {
    lines.push(`shoal: error: ${String(err)}`);
  }
  if (debug) {
    let cur: unknown = err;
    while (cur instanceof Error) {
      lines.push(`  ${cur.stack ?? `${cur.name}: ${cur.message}`}`.replaceAll("\n", "\n  "));
      cur = cur.cause;
      if (cur !== undefined && !(cur instanceof Error)) lines.push(`  caused by: ${String(cur)}`);
    }
  }
  return lines.join("\n");
}

/** Exit code for an error that escaped to main.ts. */
export function exitCodeOf(err: unknown): number {
  return err instanceof ShoalError ? err.exitCode : 1;
}

/**
 * Thrown by a command that has already printed what it had to say and only
 * needs to end with a status: `doctor` finding a problem, `run` passing on the
 * container's own exit status.
 */
export class ExitStatus {
  constructor(readonly code: number) {}
}
