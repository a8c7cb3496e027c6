/**
 * The command-line program: global options, the command table, and the
 * translation of the parser's errors into shoal's one-line usage errors.
 */
import { Command, CommanderError } from "@commander-js/extra-typings";
import { ExitStatus, UsageError } from "../errors.ts";
import { closestName } from "../suggest.ts";
import { VERSION } from "../version.ts";
import { addGlobalOptions } from "./context.ts";
import { registerDoctor } from "./doctor.ts";
import { registerImages } from "./images.ts";
import { registerKill } from "./kill.ts";
import { registerLoad } from "./load.ts";
import { registerLogin } from "./login.ts";
import { registerPs } from "./ps.ts";
import { registerPull } from "./pull.ts";
import { registerRun } from "./run.ts";
import { registerVersion } from "./version.ts";

/** Every command, in the order `shoal --help` lists them. */
const commands: ((program: Command) => void)[] = [
  registerRun,
  registerPs,
  registerKill,
  registerPull,
  registerImages,
  registerLoad,
  registerLogin,
  registerDoctor,
  registerVersion,
];

export function buildProgram(): Command {
  const program = new Command("shoal")
    .description("Rootless OCI containers for HPC clusters.")
    .usage("[OPTIONS] COMMAND [ARGS...]")
    .version(`shoal ${VERSION}`, "--version", "print the version and exit")
    .helpOption("-h, --help", "show help for shoal or a command")
    .helpCommand(false)
    .enablePositionalOptions()
    .showSuggestionAfterError(true)
    .exitOverride()
    .configureOutput({
      // Parse errors are rethrown and rendered by main.ts as one line.
      outputError: () => {},
    })
    .addHelpText(
      "after",
      `
Run 'shoal help COMMAND' for the options and examples of one command.

Examples:
  shoal doctor                 check that this machine and user can run containers
  shoal pull debian:bookworm   pull an image from Docker Hub
  shoal images                 list your images
  shoal --version`,
    );
  addGlobalOptions(program);
  for (const register of commands) register(program);
  registerHelp(program);
  return program;
}

/** `shoal help [COMMAND]`; the parser's own would print everything for an unknown name. */
function registerHelp(program: Command): void {
  program.command("help")
    .description("show help for a command")
    .argument("[COMMAND]", "the command to explain")
    .action((name) => {
      if (name === undefined) return program.outputHelp();
      const cmd = program.commands.find((c) => c.name() === name || c.aliases().includes(name));
      if (!cmd) {
        const close = closestName(name, program.commands.map((c) => c.name()));
        throw new UsageError(
          `unknown command '${name}'${close ? ` (did you mean ${close}?)` : ""}`,
          { hint: "see 'shoal --help'" },
        );
      }
      cmd.outputHelp();
    });
}

/**
 * Turns the parser's multi-line message ("error: unknown command 'pul'\n(Did
 * you mean pull?)") into shoal's single line with the suggestion inline.
 */
export function usageErrorFrom(err: CommanderError, command?: string): UsageError {
  const [first = "", ...rest] = err.message.replace(/^error: /, "").split("\n");
  const suggestion = rest.join(" ").match(/^\(Did you mean (.*)\?\)$/);
  const message = suggestion ? `${first} (did you mean ${suggestion[1]}?)` : first;
  const help = command ? `shoal ${command} --help` : "shoal --help";
  return new UsageError(message, { hint: `see '${help}'` });
}

/** Parses argv and runs the command; returns the process exit code. */
export async function runProgram(argv: string[]): Promise<number> {
  const program = buildProgram();
  if (argv.length === 0) {
    Deno.stderr.writeSync(new TextEncoder().encode(program.helpInformation()));
    return 2;
  }
  try {
    await program.parseAsync(argv, { from: "user" });
  } catch (err) {
    if (err instanceof ExitStatus) return err.code;
    if (!(err instanceof CommanderError)) throw err;
    // --help and --version end parsing by "throwing" success.
    if (err.exitCode === 0) return 0;
    const command = argv.find((a) => program.commands.some((c) => c.name() === a));
    throw usageErrorFrom(err, command);
  }
  return 0;
}
