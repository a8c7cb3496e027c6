/**
 * runc's own failure, told apart from the container's exit status by its log
 * (JSON lines; runc exits 1 either way), and said in one line: a command that
 * is not in the image exits 127 and one that cannot be executed 126, as a
 * shell reports them; a failed OCI hook (hooks.ts) is said as one.
 */
import { ShoalError } from "../errors.ts";

/** The line runc prints on stderr when it fails (also logged). */
export const RUNC_FATAL_PREFIX = "runc run failed: ";

export interface RuncFailure {
  /** Exit status shoal ends with. */
  status: number;
  error: ShoalError;
}

/** runc's fatal error from its log text, or undefined when runc did not fail. */
export function runcFailure(logText: string): RuncFailure | undefined {
  let message: string | undefined;
  for (const line of logText.split("\n")) {
    if (line.trim() === "") continue;
    try {
      const entry = JSON.parse(line) as { level?: string; msg?: string };
      if ((entry.level === "error" || entry.level === "fatal") && typeof entry.msg === "string") {
        message = entry.msg;
      }
    } catch { /* not one of runc's lines */ }
  }
  if (message === undefined) return undefined;
  const exec = message.match(/exec: "((?:[^"\\]|\\.)*)": (.*)$/);
  if (exec !== null) {
    const command = exec[1]!.replace(/\\(.)/g, "$1");
    const why = exec[2]!;
    if (/executable file not found|no such file or directory/.test(why)) {
      return {
        status: 127,
        error: new ShoalError(`'${command}' not found in the image (${why})`, {
          hint: "check the command and the image's PATH",
        }),
      };
    }
    if (/permission denied|exec format error|is a directory/.test(why)) {
      return {
        status: 126,
        error: new ShoalError(`'${command}' cannot be executed in the image (${why})`, {
          hint: "the file must be an executable program or script for this machine",
        }),
      };
    }
  }
  // runc names a hook only by its place in its stage; what it printed says why.
  const hook = message.match(
    /error running hook #(\d+): error running hook: (.*?), stdout: ([^]*), stderr: ([^]*)$/,
  );
  if (hook !== null) {
    const said = (hook[4]!.trim() || hook[3]!.trim()).replace(/\s*\n\s*/g, "; ");
    return {
      status: 125,
      error: new ShoalError(
        `the container did not start: a site hook (#${hook[1]} of its stage) failed: ${hook[2]}${
          said ? `: ${said}` : ""
        }`,
        {
          hint:
            "`shoal hooks` with this run's options and IMAGE lists the hooks it gets; ask your admin",
        },
      ),
    };
  }
  const detail = message.replace(/^(runc run|exec) failed: /, "");
  return {
    status: 125,
    error: new ShoalError(`the container did not start: ${detail}`, {
      hint: "run with --debug for details; `shoal doctor` checks this machine",
    }),
  };
}
