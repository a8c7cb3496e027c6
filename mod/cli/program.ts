/**
 * The command-line program: the command table, in the order `shoal --help`
 * lists it, and running what argv asks for. Each command's module loads its
 * engine with import() when it runs, so a command loads only its own code.
 */
import { ExitStatus } from "../errors.ts";
import { VERSION } from "../version.ts";
import { doctorCommand } from "./doctor.ts";
import { imagesCommand, rmiCommand } from "./images.ts";
import { killCommand } from "./kill.ts";
import { loadCommand } from "./load.ts";
import { loginCommand, logoutCommand } from "./login.ts";
import { parseArgv, type Program } from "./parser.ts";
import { psCommand } from "./ps.ts";
import { pullCommand } from "./pull.ts";
import { runCommand } from "./run.ts";
import { versionCommand } from "./version.ts";

export const program: Program = {
  summary: "Rootless OCI containers for HPC clusters.",
  version: VERSION,
  commands: [
    runCommand,
    psCommand,
    killCommand,
    pullCommand,
    imagesCommand,
    rmiCommand,
    loadCommand,
    loginCommand,
    logoutCommand,
    doctorCommand,
    versionCommand,
  ],
  more: `
Run 'shoal help COMMAND' for the options and examples of one command.

Examples:
  shoal doctor                 check that this machine and user can run containers
  shoal pull debian:bookworm   pull an image from Docker Hub
  shoal images                 list your images
  shoal --version`,
};

const encoder = new TextEncoder();

/** Parses argv and runs the command; returns the process exit code. */
export async function runProgram(argv: string[]): Promise<number> {
  const parse = parseArgv(program, argv);
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
