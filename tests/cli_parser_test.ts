/**
 * The command-line syntax users bring from docker, podman and sarus, checked
 * on shoal's real command table (parsing only; nothing runs).
 */
import { program } from "../mod/cli/program.ts";
import { parseArgv } from "../mod/cli/parser.ts";
import { UsageError } from "../mod/errors.ts";
import { assert, assertEquals, assertRejects } from "./support/assert.ts";

async function parse(argv: string[]) {
  const p = await parseArgv(program, argv);
  if (p.kind !== "run") throw new Error(`expected a command, got: ${p.text}`);
  return { name: p.command.name, ...p.invocation };
}

Deno.test("run: options after IMAGE belong to the container's command", async () => {
  const p = await parse(["run", "--root", "-e", "A=1", "img", "ls", "-la", "--root", "--", "-x"]);
  assertEquals(p.args, ["img", "ls", "-la", "--root", "--", "-x"]);
  assertEquals(p.options.root, true);
  assertEquals(p.options.env, ["A=1"]);
});

Deno.test("values: separate, after '=', glued to a short name; clusters of short flags", async () => {
  const p = await parse([
    "run",
    "-it",
    "-wDIR",
    "--name=n1",
    "-v",
    "/a:/b",
    "--volume=/c:/d:ro",
    "--mount",
    "type=bind,src=/e,dst=/f",
    "-e",
    "-notanoption",
    "img",
  ]);
  assertEquals(p.options.tty, true);
  assertEquals(p.options.interactive, true);
  assertEquals(p.options.workdir, "DIR");
  assertEquals(p.options.name, "n1");
  assertEquals(p.options.volume, ["/a:/b", "/c:/d:ro"]);
  assertEquals(p.options.mount, ["type=bind,src=/e,dst=/f"]);
  // A value is taken even when it starts with '-', as docker does.
  assertEquals(p.options.env, ["-notanoption"]);
  assertEquals(p.args, ["img"]);
});

Deno.test("-e=VALUE is -e VALUE, as docker takes it", async () => {
  assertEquals((await parse(["run", "-e=A=1", "-iw=/w", "img"])).options.env, ["A=1"]);
  assertEquals((await parse(["run", "-iw=/w", "img"])).options.workdir, "/w");
});

Deno.test("a cluster ending in an option that takes a value takes the next argument", async () => {
  const p = await parse(["run", "-iw", "/work", "img"]);
  assertEquals(p.options.interactive, true);
  assertEquals(p.options.workdir, "/work");
});

Deno.test("an empty value is a value: --entrypoint '' clears the entrypoint", async () => {
  assertEquals((await parse(["run", "--entrypoint", "", "img"])).options.entrypoint, "");
  assertEquals((await parse(["run", "--entrypoint=", "img"])).options.entrypoint, "");
});

Deno.test("global flags before and after the command name set the verbosity", async () => {
  assertEquals((await parse(["--debug", "ps"])).verbosity, "debug");
  assertEquals((await parse(["ps", "-q"])).verbosity, "quiet");
  assertEquals((await parse(["images", "--verbose"])).verbosity, "verbose");
  assertEquals((await parse(["ps"])).verbosity, "normal");
  // After IMAGE it is the container's.
  assertEquals((await parse(["run", "img", "--debug"])).verbosity, "normal");
});

Deno.test("--tls-verify takes its value only after '='", async () => {
  assertEquals((await parse(["pull", "--tls-verify", "x"])).options.tlsVerify, true);
  assertEquals((await parse(["pull", "--tls-verify=false", "x"])).options.tlsVerify, false);
  assertEquals((await parse(["pull", "x"])).options.tlsVerify, undefined);
});

Deno.test("'-' and arguments after '--' are arguments", async () => {
  assertEquals((await parse(["load", "-", "name"])).args, ["-", "name"]);
  assertEquals((await parse(["rmi", "--", "-weird"])).args, ["-weird"]);
});

Deno.test("help is printed for -h anywhere before the command's arguments end", async () => {
  for (const argv of [["run", "-h"], ["run", "--root", "--help"], ["help", "run"]]) {
    const p = await parseArgv(program, argv);
    assertEquals(p.kind, "print");
    if (p.kind === "print") {
      assertEquals(p.text.split("\n")[0], "Usage: shoal run [OPTIONS] IMAGE [COMMAND [ARG...]]");
    }
  }
  assertEquals((await parse(["run", "img", "-h"])).args, ["img", "-h"]);
});

Deno.test("bad command lines are usage errors that say what is wrong", async () => {
  const cases: [string[], string][] = [
    [["run", "--name"], "--name needs a value (NAME)"],
    [["run", "--pid", "container", "img"], "--pid takes host or private, not 'container'"],
    [["run", "--root=yes", "img"], "--root takes no value"],
    [["run", "-z", "img"], "unknown option '-z'"],
    [["run", "--mout", "x", "img"], "unknown option '--mout' (did you mean --mount?)"],
    [["kill"], "missing NAME for 'shoal kill'"],
    [["rmi"], "missing IMAGE for 'shoal rmi'"],
    [["ps", "extra"], "too many arguments for 'ps': 'extra'"],
    [["pull", "--compression", "brotli", "x"], "--compression takes zstd or gzip or lz4"],
    [["pull", "--compression-level", "high", "x"], "--compression-level takes a number"],
  ];
  for (const [argv, message] of cases) {
    const err = await assertRejects(() => parseArgv(program, argv), UsageError);
    if (!err.message.startsWith(message)) {
      throw new Error(`${argv.join(" ")}: got '${err.message}', expected '${message}...'`);
    }
  }
});

Deno.test("did-you-mean guesses only close misspellings; other tools' commands get advice", async () => {
  const message = async (argv: string[]) =>
    (await assertRejects(() => parseArgv(program, argv), UsageError)).message;
  // Close misspellings still get their guess.
  for (const [typed, meant] of [["rnu", "run"], ["imgaes", "images"], ["verison", "version"]]) {
    assertEquals(await message([typed!]), `unknown command '${typed}' (did you mean ${meant}?)`);
  }
  assertEquals(
    await message(["run", "--centralised-repository", "img"]),
    "unknown option '--centralised-repository' (did you mean --centralized-repository?)",
  );
  // Two edits in a short word are another word, not a typo.
  for (const typed of ["sheel", "lgos", "puhs"]) {
    assertEquals(await message([typed]), `unknown command '${typed}'`);
  }
  const advice: [string, string][] = [
    ["logs", "goes where its 'shoal run' writes"],
    ["shell", "'shoal run -it IMAGE sh'"],
    ["build", "build with docker, podman or buildah"],
    ["start", "started by 'shoal run'"],
    ["stop", "'shoal kill NAME TERM'"],
    ["rm", "removed when they end; 'shoal rmi' removes images"],
  ];
  for (const [name, text] of advice) {
    const got = await message([name]);
    assert(got.startsWith(`shoal has no '${name}' command: `), got);
    assert(got.includes(text), got);
    assert(!got.includes("did you mean"), got);
  }
  assertEquals(await message(["help", "logs"]), await message(["logs"]));
});

Deno.test("Docker's run options: --rm, --env-file, -u, --entrypoint", async () => {
  const p = await parse([
    "run",
    "--rm",
    "--env-file",
    "a.env",
    "--env-file=b.env",
    "-u",
    "0:0",
    "--entrypoint",
    "/bin/sh",
    "img",
    "-c",
    "echo hi",
  ]);
  assertEquals(p.options.rm, true);
  assertEquals(p.options.envFile, ["a.env", "b.env"]);
  assertEquals(p.options.user, "0:0");
  assertEquals(p.options.entrypoint, "/bin/sh");
  assertEquals(p.args, ["img", "-c", "echo hi"]);
  assertEquals((await parse(["run", "--user=alice", "img"])).options.user, "alice");
});

Deno.test("every command of the table loads the definition of that command", async () => {
  for (const entry of program.commands) assertEquals((await entry.load()).name, entry.name);
});
