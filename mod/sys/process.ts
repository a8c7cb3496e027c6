/** Running a short-lived program to completion, with a time limit. */

export interface Output {
  /** Exit status; 127 when the program does not exist, as a shell reports it. */
  code: number;
  stdout: string;
  stderr: string;
  /** The program was killed for running past the time limit. */
  timedOut: boolean;
}

const TIMEOUT_SECONDS = 10;

/**
 * Runs `cmd` with stdin closed, killing it after 10 s, and returns what it
 * printed; never throws for its failure.
 */
export async function output(cmd: string, args: string[]): Promise<Output> {
  const timeout = AbortSignal.timeout(TIMEOUT_SECONDS * 1000);
  try {
    const out = await new Deno.Command(cmd, {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: timeout,
    }).output();
    const dec = new TextDecoder();
    return {
      code: out.code,
      stdout: dec.decode(out.stdout),
      stderr: dec.decode(out.stderr),
      timedOut: timeout.aborted,
    };
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      return { code: 127, stdout: "", stderr: `${cmd}: not found`, timedOut: false };
    }
    throw err;
  }
}

/** Why a run failed, in one line: the last line of its stderr, or how it ended. */
export function failure(r: Output): string {
  if (r.timedOut) return `no answer within ${TIMEOUT_SECONDS} s`;
  return r.stderr.trim().split("\n").pop()?.trim() || `exit status ${r.code}`;
}
