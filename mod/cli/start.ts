/**
 * What both entry points do (main.ts, the whole program; main_run.ts, `shoal
 * run` alone): hold SIGUSR1 and SIGUSR2 away from Deno, parse argv and run
 * the command, render an escaped error once, exit with the status.
 */
import { exitCodeOf, ExitStatus, renderError } from "../errors.ts";
import { holdSignals } from "../sys/signals.ts";
import { debugRequested, parseArgv, type Program, programArgs } from "./parser.ts";

const encoder = new TextEncoder();

/** Parses argv and runs the command; returns the process exit code. */
async function runProgram(program: Program, argv: string[]): Promise<number> {
  const parse = await parseArgv(program, argv);
  if (parse.kind === "print") {
    const out = parse.stream === "stdout" ? Deno.stdout : Deno.stderr;
    const bytes = encoder.encode(parse.text);
    for (let done = 0; done < bytes.length;) done += out.writeSync(bytes.subarray(done));
    return parse.code;
  }
  try {
    await parse.command.action(parse.invocation);
  } catch (err) {
    if (err instanceof ExitStatus) return err.code;
    throw err;
  }
  return 0;
}

/** Runs `program` on shoal's argv and exits. */
export async function start(program: Program): Promise<never> {
  // First of all: SIGUSR1 must never reach Deno (it opens an inspector; see mod/sys/signals.ts).
  holdSignals();
  const args = programArgs();
  let code: number;
  try {
    code = await runProgram(program, args);
  } catch (err) {
    console.error(renderError(err, debugRequested(args)));
    code = exitCodeOf(err);
  }
  Deno.exit(code);
}
