/**
 * The command-line parser: commands declared as data (options, arguments,
 * help), parsed into typed values, with shoal's one-line usage errors.
 *
 * shoal does not use commander: it imports node:events, node:fs,
 * node:process and node:child_process, and loading those makes Deno set up its
 * Node compatibility layer, ~18 ms on every start, more than half of what
 * `shoal run` may spend before runc (see bench/startup.ts). This parser needs
 * nothing but the language.
 *
 * Syntax, as docker, podman and sarus take it: `--name VALUE`,
 * `--name=VALUE`, `-n VALUE`, `-nVALUE`, clustered short flags (`-it`),
 * optional values only after `=` (`--tls-verify=false`), `--` ending the
 * options, `-` an argument. Global flags (--debug, --verbose, -q) are taken
 * before and after the command's name.
 */
import { UsageError } from "../errors.ts";
import type { Verbosity } from "../log.ts";
import { closestName } from "../suggest.ts";
import { hostBytes, procStrings } from "../bytes.ts";

/** How an option is spelt and explained. */
export interface OptionInfo {
  readonly long: string;
  readonly short?: string;
  /** The value's placeholder (`DIR`); absent for a flag. */
  readonly placeholder?: string;
  /** The value may be left out (`--tls-verify`), and is then given only after `=`. */
  readonly optionalValue: boolean;
  readonly help: string;
}

/** One option: its spelling and help, and how its occurrences make its value. */
export interface Opt<T> extends OptionInfo {
  readonly initial: T;
  /** Folds one occurrence into the value so far; `value` is undefined for a bare flag. */
  readonly take: (value: string | undefined, previous: T) => T;
}

// deno-lint-ignore no-explicit-any
export type Options = Record<string, Opt<any>>;

export type Values<O extends Options> = { [K in keyof O]: O[K] extends Opt<infer T> ? T : never };

/** `"-w, --workdir <DIR>"`: short and long names and the placeholder (`[X]`: optional). */
function spelling(
  spec: string,
): Pick<Opt<unknown>, "long" | "short" | "placeholder" | "optionalValue"> {
  const m = spec.match(/^(?:(-[a-zA-Z]), )?(--[a-z][a-z0-9-]*)(?: <(.+)>| \[(.+)\])?$/);
  if (m === null) throw new Error(`bad option spelling: ${spec}`);
  return { short: m[1], long: m[2]!, placeholder: m[3] ?? m[4], optionalValue: m[4] !== undefined };
}

/** An on/off option. */
export function flag(spec: string, help: string): Opt<boolean> {
  return { ...spelling(spec), help, initial: false, take: () => true };
}

/** An option with a value; the last one given counts. */
export function value(spec: string, help: string): Opt<string | undefined> {
  return { ...spelling(spec), help, initial: undefined, take: (v) => v };
}

/** An option that may be repeated; every value counts, in order. */
export function list(spec: string, help: string): Opt<string[]> {
  return { ...spelling(spec), help, initial: [], take: (v, prev) => [...prev, v ?? ""] };
}

/** An option whose value is one of `choices`. */
export function choice<const C extends readonly string[]>(
  spec: string,
  choices: C,
  help: string,
): Opt<C[number] | undefined> {
  const s = spelling(spec);
  return {
    ...s,
    help,
    initial: undefined,
    take: (v) => {
      if (choices.includes(v ?? "")) return v;
      throw new UsageError(`${s.long} takes ${choices.join(" or ")}, not '${v}'`);
    },
  };
}

/** An option whose value `parse` turns into a T (and checks; it throws a UsageError). */
export function parsed<T>(
  spec: string,
  help: string,
  parse: (value: string | undefined) => T,
): Opt<T | undefined> {
  return { ...spelling(spec), help, initial: undefined, take: (v) => parse(v) };
}

export interface Arg {
  readonly name: string;
  readonly help: string;
  readonly optional?: boolean;
  /** Takes every remaining argument (the last one only); one at least unless optional. */
  readonly variadic?: boolean;
}

export interface Invocation<O extends Options> {
  args: string[];
  options: Values<O>;
  verbosity: Verbosity;
}

export interface CommandDef<O extends Options> {
  readonly name: string;
  /** What follows `shoal NAME` in the usage line; by default made from the arguments. */
  readonly usage?: string;
  readonly args: readonly Arg[];
  readonly options: O;
  /** Everything after the first argument is an argument (the container's command line). */
  readonly stopAtFirstArgument?: boolean;
  /** Help text after the options: notes and examples. */
  readonly more?: string;
  readonly action: (input: Invocation<O>) => Promise<void> | void;
}

/** A command with its types erased, for the command table. */
export type Command = CommandDef<Options>;

export function defineCommand<O extends Options>(def: CommandDef<O>): Command {
  return def as unknown as Command;
}

/** Flags every command takes, before or after its name. */
const GLOBALS = {
  debug: flag("--debug", "show debug messages and the cause of errors"),
  verbose: flag("--verbose", "show more about what shoal does"),
  quiet: flag("-q, --quiet", "show only errors"),
  help: flag("-h, --help", "show this help"),
};
type Globals = Values<typeof GLOBALS>;

const VERSION_OPTION = flag("--version", "print the version and exit");

/** A command as `shoal --help` lists it; its definition is loaded when it is used. */
export interface CommandEntry {
  readonly name: string;
  /** One line, for `shoal --help` and under the usage line of `shoal help NAME`. */
  readonly summary: string;
  readonly load: () => Promise<Command>;
}

export interface Program {
  readonly summary: string;
  readonly version: string;
  readonly commands: readonly CommandEntry[];
  /** Help text after the command list. */
  readonly more: string;
  /** Other tools' commands shoal lacks, to what to do instead (said instead of a guess). */
  readonly foreign?: Readonly<Record<string, string>>;
}

/** What argv asks for: a command to run, or text to print (help, version, usage). */
export type Parse =
  | { kind: "run"; command: Command; invocation: Invocation<Options> }
  | { kind: "print"; text: string; stream: "stdout" | "stderr"; code: number };

/**
 * shoal's arguments byte for byte. Deno.args replaces every byte that is not
 * UTF-8 with U+FFFD, so `ls $'caf\xe9'` would name another file; the kernel's
 * copy in /proc/self/cmdline ends with the same arguments (after Deno's own
 * and the script's under `deno run`), with hostString's escapes for those
 * bytes. Should the two ever disagree, Deno.args is used as it is.
 */
export function programArgs(
  lossy: readonly string[] = Deno.args,
  cmdline = "/proc/self/cmdline",
): string[] {
  // Only a replaced byte makes U+FFFD: without one, Deno.args are the bytes.
  if (!lossy.some((arg) => arg.includes("\ufffd"))) return [...lossy];
  const all = procStrings(cmdline);
  const raw = lossy.length === 0 ? [] : all.slice(-lossy.length);
  const same = raw.length === lossy.length &&
    raw.every((arg, i) =>
      arg === lossy[i] || new TextDecoder().decode(hostBytes(arg)) === lossy[i]
    );
  return same ? raw : [...lossy];
}

/** Whether --debug was given before any `--`; read even when parsing fails. */
export function debugRequested(argv: string[]): boolean {
  const end = argv.indexOf("--");
  return (end < 0 ? argv : argv.slice(0, end)).includes("--debug");
}

export async function parseArgv(program: Program, argv: string[]): Promise<Parse> {
  const globals = initialValues(GLOBALS) as Globals;
  let version = false;
  let i = 0;
  for (; i < argv.length && argv[i]!.startsWith("-") && argv[i] !== "-"; i++) {
    const { name, inline } = splitToken(argv[i]!);
    if (name === VERSION_OPTION.long) version = true;
    else {
      const key = findOption(GLOBALS, name);
      if (key === undefined) throw unknownOption(name, [VERSION_OPTION, ...Object.values(GLOBALS)]);
      if (inline !== undefined) throw new UsageError(`${name} takes no value`);
      globals[key] = true;
    }
  }
  const name = argv[i];
  if (name === undefined || name === "help" || globals.help) {
    if (version) return print(`shoal ${program.version}\n`);
    if (name === "help") return print(await helpFor(program, argv[i + 1]));
    if (globals.help) return print(programHelp(program));
    return { kind: "print", text: programHelp(program), stream: "stderr", code: 2 };
  }
  if (version) return print(`shoal ${program.version}\n`);
  const entry = program.commands.find((c) => c.name === name);
  if (entry === undefined) throw unknownCommand(program, name);
  return parseCommand(entry, await entry.load(), argv.slice(i + 1), globals);
}

function print(text: string): Parse {
  return { kind: "print", text, stream: "stdout", code: 0 };
}

async function helpFor(program: Program, name: string | undefined): Promise<string> {
  if (name === undefined) return programHelp(program);
  const entry = program.commands.find((c) => c.name === name);
  if (entry === undefined) throw unknownCommand(program, name);
  return commandHelp(entry, await entry.load());
}

function parseCommand(
  entry: CommandEntry,
  command: Command,
  argv: string[],
  globals: Globals,
): Parse {
  const options = initialValues(command.options);
  const args: string[] = [];
  const hint = `see 'shoal ${command.name} --help'`;
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i]!;
    if (token === "--") {
      args.push(...argv.slice(i + 1));
      break;
    }
    if (!token.startsWith("-") || token === "-") {
      args.push(token);
      if (command.stopAtFirstArgument) {
        args.push(...argv.slice(i + 1));
        break;
      }
      continue;
    }
    const shorts = token.startsWith("--") ? [token] : [...token.slice(1)].map((c) => `-${c}`);
    for (let s = 0; s < shorts.length; s++) {
      // `-wDIR` (or `-w=DIR`): the rest of a short cluster is the value of an option that
      // takes one.
      const { name, inline } = s === 0 && token.startsWith("--") ? splitToken(token) : {
        name: shorts[s]!,
        inline: token.slice(s + 2).replace(/^=/, "") || undefined,
      };
      const own = findOption(command.options, name);
      const opt = own === undefined ? undefined : command.options[own]!;
      if (opt === undefined) {
        const key = findOption(GLOBALS, name);
        if (key === undefined) {
          throw unknownOption(
            name,
            [...Object.values(command.options), ...Object.values(GLOBALS)],
            hint,
          );
        }
        if (inline !== undefined && token.startsWith("--")) {
          throw new UsageError(`${name} takes no value`, { hint });
        }
        globals[key] = true;
        continue;
      }
      if (opt.placeholder === undefined) {
        if (inline !== undefined && token.startsWith("--")) {
          throw new UsageError(`${name} takes no value`, { hint });
        }
        options[own!] = opt.take(undefined, options[own!]);
        continue;
      }
      let v = inline;
      if (v === undefined && !opt.optionalValue) {
        if (i + 1 >= argv.length) {
          throw new UsageError(`${opt.long} needs a value (${opt.placeholder})`, { hint });
        }
        v = argv[++i];
      }
      options[own!] = opt.take(v, options[own!]);
      break; // the value took the rest of the cluster
    }
    if (globals.help) return print(commandHelp(entry, command));
  }
  if (globals.help) return print(commandHelp(entry, command));
  checkArity(command, args, hint);
  return {
    kind: "run",
    command,
    invocation: { args, options, verbosity: verbosityOf(globals) },
  };
}

function checkArity(command: Command, args: string[], hint: string): void {
  const required = command.args.filter((a) => !a.optional);
  const missing = required[args.length];
  if (missing !== undefined) {
    throw new UsageError(`missing ${missing.name} for 'shoal ${command.name}'`, { hint });
  }
  if (!command.args.some((a) => a.variadic) && args.length > command.args.length) {
    const extra = args.slice(command.args.length).map((a) => `'${a}'`).join(" ");
    throw new UsageError(`too many arguments for '${command.name}': ${extra}`, { hint });
  }
}

function verbosityOf(g: Globals): Verbosity {
  if (g.debug) return "debug";
  if (g.quiet) return "quiet";
  if (g.verbose) return "verbose";
  return "normal";
}

function initialValues<O extends Options>(options: O): Values<O> {
  return Object.fromEntries(Object.entries(options).map(([k, o]) => [k, o.initial])) as Values<O>;
}

/** `--name=value` into its name and value. */
function splitToken(token: string): { name: string; inline?: string } {
  const eq = token.indexOf("=");
  return eq < 0 ? { name: token } : { name: token.slice(0, eq), inline: token.slice(eq + 1) };
}

function findOption<O extends Options>(options: O, name: string): keyof O & string | undefined {
  return Object.keys(options).find((k) => options[k]!.long === name || options[k]!.short === name);
}

function unknownOption(
  name: string,
  known: OptionInfo[],
  hint = "see 'shoal --help'",
): UsageError {
  const close = closestName(name, known.map((o) => o.long));
  return new UsageError(`unknown option '${name}'${close ? ` (did you mean ${close}?)` : ""}`, {
    hint,
  });
}

function unknownCommand(program: Program, name: string): UsageError {
  const instead = program.foreign?.[name];
  if (instead !== undefined) {
    return new UsageError(`shoal has no '${name}' command: ${instead}`, {
      hint: "see 'shoal --help'",
    });
  }
  const close = closestName(name, [...program.commands.map((c) => c.name), "help"]);
  return new UsageError(`unknown command '${name}'${close ? ` (did you mean ${close}?)` : ""}`, {
    hint: "see 'shoal --help'",
  });
}

// Help text.

function usageOf(command: Command): string {
  const args = command.args.map((a) => {
    const name = a.variadic ? `${a.name}...` : a.name;
    return a.optional ? `[${name}]` : name;
  });
  return command.usage ?? ["[OPTIONS]", ...args].join(" ");
}

function optionLabel(o: OptionInfo): string {
  const names = o.short ? `${o.short}, ${o.long}` : `    ${o.long}`;
  if (o.placeholder === undefined) return names;
  return o.optionalValue ? `${names}[=${o.placeholder}]` : `${names} ${o.placeholder}`;
}

/** Two-column rows, the second column aligned. */
function rows(pairs: [string, string][]): string {
  const width = Math.max(...pairs.map(([l]) => l.length));
  return pairs.map(([l, r]) => `  ${l.padEnd(width)}   ${r}`.trimEnd()).join("\n");
}

export function commandHelp(entry: CommandEntry, command: Command): string {
  const parts = [`Usage: shoal ${command.name} ${usageOf(command)}`, entry.summary];
  if (command.args.length > 0) {
    parts.push(`Arguments:\n${rows(command.args.map((a) => [a.name, a.help]))}`);
  }
  const options = [...Object.values(command.options), ...Object.values(GLOBALS)];
  parts.push(`Options:\n${rows(options.map((o) => [optionLabel(o), o.help]))}`);
  if (command.more) parts.push(command.more.trim());
  return parts.join("\n\n") + "\n";
}

export function programHelp(program: Program): string {
  const options = [VERSION_OPTION, ...Object.values(GLOBALS)];
  const commands: [string, string][] = [
    ...program.commands.map((c): [string, string] => [c.name, c.summary]),
    ["help", "show help for a command"],
  ];
  return [
    "Usage: shoal [OPTIONS] COMMAND [ARGS...]",
    program.summary,
    `Options:\n${rows(options.map((o) => [optionLabel(o), o.help]))}`,
    `Commands:\n${rows(commands)}`,
    program.more.trim(),
  ].join("\n\n") + "\n";
}
