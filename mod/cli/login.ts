import { UsageError } from "../errors.ts";
import { commandContext, tlsVerifyOption } from "./context.ts";
import { printLine } from "./output.ts";
import { defineCommand, flag, value } from "./parser.ts";
import { promptLine, promptSecret, readStdinSecret, stdinIsTerminal } from "./prompt.ts";

export const loginCommand = defineCommand({
  name: "login",
  args: [{
    name: "REGISTRY",
    help: "the registry: HOST[:PORT], e.g. ghcr.io, nvcr.io, localhost:5000",
  }],
  options: {
    username: value("-u, --username <USER>", "the username (asked for on a terminal when missing)"),
    passwordStdin: flag("--password-stdin", "read the password from standard input"),
    tlsVerify: tlsVerifyOption(),
  },
  more: `
The credentials are checked against the registry, then stored (mode 0600) in
$XDG_CONFIG_HOME/shoal/auth.json (default ~/.config/shoal/auth.json), in the
format of Docker's config.json. Credentials from 'docker login' and
'podman login' are used too, without logging in again.

Examples:
  shoal login ghcr.io
  echo "$TOKEN" | shoal login -u myuser --password-stdin nvcr.io
  shoal login --tls-verify=false -u admin localhost:5000`,
  async action({ args: [registry], options: opts, verbosity }) {
    const { loaded, logger } = await commandContext(verbosity);
    const { login, registryArgument } = await import("../image/login.ts");
    registryArgument(registry!); // a bad name is reported before asking for a password
    const interactive = stdinIsTerminal();
    let username = opts.username;
    if (username === undefined) {
      if (opts.passwordStdin || !interactive) {
        throw new UsageError("give the username with -u USER", {
          hint: "stdin is not a terminal to ask on",
        });
      }
      username = promptLine("Username:");
    }
    let password: string;
    if (opts.passwordStdin) password = await readStdinSecret();
    else if (interactive) password = await promptSecret("Password: ");
    else {
      throw new UsageError("stdin is not a terminal: pass the password with --password-stdin");
    }
    const result = await login(
      loaded.config,
      Deno.env.toObject(),
      { registry: registry!, username, password, tlsVerify: opts.tlsVerify },
      logger,
    );
    if (logger.verbosity !== "quiet") {
      printLine(`Login to ${result.registry} succeeded (credentials in ${result.file})`);
    }
  },
});

export const logoutCommand = defineCommand({
  name: "logout",
  args: [{ name: "REGISTRY", help: "the registry: HOST[:PORT]" }],
  options: {},
  more: "Examples:\n  shoal logout ghcr.io",
  async action({ args: [registry], verbosity }) {
    const { logger } = await commandContext(verbosity);
    const { logout } = await import("../image/login.ts");
    const result = await logout(Deno.env.toObject(), registry!);
    for (const file of result.elsewhere) {
      logger.warn(`${file} still holds credentials for ${result.registry}; shoal does not edit it`);
    }
    if (logger.verbosity === "quiet") return;
    // As docker logout: having nothing to remove is no misuse.
    printLine(
      result.removed
        ? `Removed the credentials for ${result.registry}`
        : `Not logged in to ${result.registry} (nothing in ${result.file})`,
    );
  },
});
