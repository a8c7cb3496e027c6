import { ExitStatus, renderError, UsageError } from "../errors.ts";
import { parseEnvOption, readEnvFile } from "../runtime/env.ts";
import { commandContext } from "./context.ts";
import { defineCommand, flag, list, value } from "./parser.ts";

export const execCommand = defineCommand({
  name: "exec",
  usage: "[OPTIONS] NAME COMMAND [ARG...]",
  args: [
    { name: "NAME", help: "a running container's name or id, as 'shoal ps' lists it" },
    { name: "COMMAND", help: "command and arguments", variadic: true },
  ],
  stopAtFirstArgument: true,
  options: {
    user: value(
      "-u, --user <USER[:GROUP]>",
      "the container's own user only (yourself, or root in a --root container)",
    ),
    env: list("-e, --env <NAME[=VALUE]>", "set a variable (NAME alone: take yours)"),
    envFile: list("--env-file <FILE>", "set the variables of FILE (before -e)"),
    workdir: value("-w, --workdir <DIR>", "working directory inside (default: the container's)"),
    tty: flag("-t, --tty", "give the command a terminal"),
    interactive: flag(
      "-i, --interactive",
      "pass standard input when it is a terminal (pipes and files are always passed)",
    ),
  },
  more: `
Runs a command in one of your running containers (Podman's exec, Apptainer's
instance exec), in its namespaces, as its user, with its environment and
working directory. The command's exit status is shoal's; it ends when the
container's main process does.

Examples:
  shoal run --name dev IMAGE sleep 3600 &
  shoal exec dev ps -ef
  shoal exec -it -w /work dev bash`,
  async action({ args: [name, ...command], options: opts, verbosity }) {
    if (opts.tty && !Deno.stdin.isTerminal()) {
      throw new UsageError("-t needs a terminal on standard input", {
        hint: "drop -t: input from a pipe or a file is passed without it",
      });
    }
    if (opts.workdir !== undefined && !opts.workdir.startsWith("/")) {
      throw new UsageError(`-w ${opts.workdir}: the directory must be absolute`);
    }
    const { loaded, logger } = await commandContext(verbosity);
    const { execInRun } = await import("../runtime/launch_exec.ts");
    const outcome = await execInRun(loaded, {
      name: name!,
      command,
      env: [...opts.envFile.flatMap(readEnvFile), ...opts.env.map(parseEnvOption)],
      workdir: opts.workdir,
      tty: opts.tty,
      stdin: opts.interactive || !Deno.stdin.isTerminal(),
      user: opts.user,
    }, logger);
    if (outcome.error !== undefined) {
      console.error(renderError(outcome.error, logger.verbosity === "debug"));
    }
    if (outcome.status !== 0) throw new ExitStatus(outcome.status);
  },
});
