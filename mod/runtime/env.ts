/**
 * The container's environment, merged in Sarus's order: host environment,
 * identity (HOME, USER, LOGNAME of the container user), image environment, site
 * configuration (set, prepend, append, unset, in that order), then `-e`.
 */
import { UsageError } from "../errors.ts";
import type { SiteConfig } from "../config/schema.ts";
import { procStrings } from "../bytes.ts";

/** Docker's PATH for images that set none: the host's PATH means nothing inside. */
export const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** One `-e` option: `NAME=VALUE`, or `NAME` alone to take the host's value. */
export interface EnvOption {
  name: string;
  /** Undefined for `-e NAME`. */
  value?: string;
}

export function parseEnvOption(spec: string): EnvOption {
  const eq = spec.indexOf("=");
  const name = eq < 0 ? spec : spec.slice(0, eq);
  if (!NAME.test(name)) {
    throw new UsageError(
      `-e ${spec}: invalid variable name '${name}' (letters, digits and _, not starting with a digit)`,
    );
  }
  return eq < 0 ? { name } : { name, value: spec.slice(eq + 1) };
}

/**
 * The installed launcher's list of the variables it set for shoal's Deno
 * (DENO_DIR, DENO_NO_UPDATE_CHECK) where the caller had not (install.sh).
 */
const LAUNCHER_ADDED = "SHOAL_LAUNCHER_ADDED";

/**
 * The caller's environment byte for byte (shoal never changes it), less what
 * the launcher added for Deno: Deno.env drops a variable that is not UTF-8,
 * so `BADENV=$'a\xffb'` would vanish. Where /proc/self/environ has such
 * bytes, it is read from there, values with hostString's escapes; otherwise
 * Deno.env has it all, and is faster.
 */
export function hostEnvironment(environ = "/proc/self/environ"): Record<string, string> {
  const env = processEnvironment(environ);
  for (const name of [LAUNCHER_ADDED, ...(env[LAUNCHER_ADDED]?.split(" ") ?? [])]) {
    delete env[name];
  }
  return env;
}

function processEnvironment(environ: string): Record<string, string> {
  if (!Deno.readTextFileSync(environ).includes("\ufffd")) return Deno.env.toObject();
  const env: Record<string, string> = {};
  const entries = procStrings(environ);
  // Backwards, so that the first of two wins, as getenv(3) finds it.
  for (let i = entries.length - 1; i >= 0; i--) {
    const entry = entries[i]!;
    const eq = entry.indexOf("=");
    if (eq > 0) env[entry.slice(0, eq)] = entry.slice(eq + 1); // without a name: nothing to pass
  }
  return env;
}

/**
 * `--env-file FILE` in Docker's format: `NAME=VALUE` lines (the value as it
 * stands, quotes and trailing blanks included), `NAME` alone to take the
 * caller's value, `#` comment lines and blank lines skipped, leading blanks
 * ignored. `text` is the file's content; `file` names it in errors.
 */
export function parseEnvFile(file: string, text: string): EnvOption[] {
  const options: EnvOption[] = [];
  for (const [i, raw] of text.replace(/^\uFEFF/, "").split("\n").entries()) {
    const line = raw.replace(/\r$/, "").replace(/^[ \t]+/, "");
    if (line === "" || line.startsWith("#")) continue;
    const eq = line.indexOf("=");
    const name = eq < 0 ? line : line.slice(0, eq);
    if (!NAME.test(name)) {
      throw new UsageError(
        `--env-file ${file}: line ${
          i + 1
        }: invalid variable name '${name}' (letters, digits and _, not starting with a digit)`,
        { hint: "write NAME=VALUE or NAME, one a line; # starts a comment" },
      );
    }
    options.push(eq < 0 ? { name } : { name, value: line.slice(eq + 1) });
  }
  return options;
}

/** Reads and parses `--env-file FILE` (parseEnvFile); a file that cannot be read is a usage error. */
export function readEnvFile(file: string): EnvOption[] {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(Deno.readFileSync(file));
  } catch (err) {
    const why = err instanceof TypeError
      ? "it is not UTF-8 text"
      : err instanceof Deno.errors.NotFound
      ? "no such file"
      : err instanceof Deno.errors.PermissionDenied
      ? "permission denied"
      : err instanceof Deno.errors.IsADirectory
      ? "it is a directory"
      : (err as Error).message;
    throw new UsageError(`--env-file ${file}: ${why}`, { cause: err });
  }
  return parseEnvFile(file, text);
}

/** Joins path-list elements with ':' and drops empty ones (an empty element means the cwd). */
function joinList(...values: string[]): string {
  return values.flatMap((v) => v.split(":")).filter((e) => e !== "").join(":");
}

export interface EnvironmentInput {
  host: Record<string, string>;
  /** HOME, USER, LOGNAME of the user the container runs as. */
  identity: Record<string, string>;
  /** The image's `NAME=VALUE` list. */
  image: string[];
  site: SiteConfig["environment"];
  options: EnvOption[];
}

/** The merged environment as `NAME=VALUE` strings, in first-set order. */
export function mergeEnvironment(input: EnvironmentInput): string[] {
  const env = new Map<string, string>(Object.entries(input.host));
  for (const [k, v] of Object.entries(input.identity)) env.set(k, v);
  let imagePath = false;
  for (const entry of input.image) {
    const eq = entry.indexOf("=");
    if (eq <= 0) continue; // a malformed image entry carries nothing runc could pass
    const name = entry.slice(0, eq);
    env.set(name, entry.slice(eq + 1));
    if (name === "PATH") imagePath = true;
  }
  if (!imagePath) env.set("PATH", DEFAULT_PATH);
  const site = input.site;
  for (const [k, v] of Object.entries(site.set)) env.set(k, v);
  for (const [k, v] of Object.entries(site.prepend)) env.set(k, joinList(v, env.get(k) ?? ""));
  for (const [k, v] of Object.entries(site.append)) env.set(k, joinList(env.get(k) ?? "", v));
  for (const k of site.unset) env.delete(k);
  for (const opt of input.options) {
    const value = opt.value ?? input.host[opt.name];
    if (value !== undefined) env.set(opt.name, value);
  }
  return [...env].map(([k, v]) => `${k}=${v}`);
}
