/**
 * OCI hooks as sites already write them for Podman and CRI-O: the JSON files
 * of the installation's hooks dir, in the oci-hooks(5) 1.0.0 format, read in
 * the order of their lower-cased names. A run gives the hooks whose `when`
 * matches it to runc in config.json; runc runs them, with the caller's
 * privileges, so a hook can do nothing the user could not.
 *
 * Read on every run's start: with no hook files that costs one readdir, and
 * the files there are checked with mod/shape.ts rather than zod (~2 ms to
 * load, docs/design/architecture.md, "Start-up rules"). A file that does not
 * parse, or that fails the installation's security checks, fails every run,
 * as Podman fails every container: a hook the site relies on (GPU isolation,
 * a site policy) silently skipped is worse than a job that does not start.
 */
import { join } from "../path.ts";
import { compareStrings } from "../compare.ts";
import { ConfigError, SecurityError, type ShoalError } from "../errors.ts";
import { rootOnlyProblems } from "../config/security.ts";
import type { LoadedConfig } from "../config/load.ts";
import {
  array,
  boolean,
  type Check,
  dictionary,
  exact,
  integer,
  optional,
  ShapeError,
  string,
  tryShape,
} from "../shape.ts";

/** The stages of runtime-spec 1.0.2 that runc 1.1 runs, in the order it runs them. */
export const HOOK_STAGES = [
  "prestart",
  "createRuntime",
  "createContainer",
  "startContainer",
  "poststart",
  "poststop",
] as const;
export type HookStage = typeof HOOK_STAGES[number];

/** A hook entry of config.json (runtime-spec, "POSIX-platform Hooks"). */
export interface OciHook {
  path: string;
  args?: string[];
  env?: string[];
  timeout?: number;
}

export type OciHooks = Partial<Record<HookStage, OciHook[]>>;

export interface HookWhen {
  always?: boolean;
  annotations?: Record<string, string>;
  commands?: string[];
  hasBindMounts?: boolean;
}

/** One installed hook file, checked. */
export interface InstalledHook {
  /** The file's name in the hooks dir. */
  name: string;
  hook: OciHook;
  when: HookWhen;
  stages: HookStage[];
}

/** What a run offers a hook's `when`. */
export interface HookFacts {
  /** `--annotation KEY=VALUE`s. */
  annotations: Record<string, string>;
  /** The container's program (its command's first word, before `--init`'s). */
  command: string;
  /** Whether the user asked for bind mounts (`-v`, `--mount`). */
  hasBindMounts: boolean;
}

/** A regular expression, as Go's regexp (which Podman uses) takes most of them. */
function pattern(v: unknown, at: string): string {
  const s = string()(v, at);
  try {
    new RegExp(s);
  } catch (err) {
    throw new ShapeError(at, `a regular expression (${(err as Error).message})`);
  }
  return s;
}

export const absolute = string((s) => s.startsWith("/"), "an absolute path");
export const envEntry = string((s) => s.indexOf("=") > 0, "a NAME=VALUE string");
const stage = string(
  (s) => (HOOK_STAGES as readonly string[]).includes(s),
  `one of ${HOOK_STAGES.join(", ")}`,
);

const hookFile = exact({
  version: string(
    (s) => s === "1.0.0",
    '"1.0.0" (the oci-hooks(5) 1.0.0 format; rewrite a 0.1.0 file in it)',
  ),
  hook: exact({
    path: absolute,
    args: optional(array(string())),
    env: optional(array(envEntry)),
    timeout: optional(integer(1)),
  }),
  when: exact({
    always: optional(boolean),
    annotations: optional(dictionary(pattern)),
    commands: optional(array(pattern)),
    hasBindMounts: optional(boolean),
  }, (when, at) => {
    if (Object.keys(when).length === 0) {
      throw new ShapeError(at, "at least one of always, annotations, commands, hasBindMounts");
    }
    for (const key of Object.keys(when.annotations ?? {})) {
      pattern(key, `${at}.annotations (the key ${key})`);
    }
  }),
  stages: array(stage as Check<HookStage>),
}, (file, at) => {
  if (file.stages.length === 0) throw new ShapeError(at ? `${at}.stages` : "stages", "a stage");
});

/** The installed hooks and, separately, what is wrong with the files that are not usable. */
export interface HookListing {
  hooks: InstalledHook[];
  errors: ShoalError[];
}

/**
 * Reads the `.json` files of `dir` (other names are not hooks, as for
 * Podman); a missing dir has none. With `checked`, each hook's program must
 * pass the installation's security checks (config/security.ts), which have
 * examined the dir and its files as the config was loaded.
 */
export function readHooks(dir: string, checked: boolean): HookListing {
  let names: string[];
  try {
    names = [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.endsWith(".json"));
  } catch (err) {
    if (err instanceof Deno.errors.NotFound || err instanceof Deno.errors.NotADirectory) {
      return { hooks: [], errors: [] };
    }
    throw new ConfigError(`hooks dir "${dir}": cannot read: ${(err as Error).message}`, {
      hint: "make it readable, or ask your admin",
    });
  }
  // oci-hooks(5): by the lower-cased names' code points.
  names.sort((a, b) => compareStrings(a.toLowerCase(), b.toLowerCase()) || compareStrings(a, b));
  const listing: HookListing = { hooks: [], errors: [] };
  for (const name of names) {
    try {
      listing.hooks.push(readHook(dir, name, checked));
    } catch (err) {
      if (!(err instanceof ConfigError || err instanceof SecurityError)) throw err;
      listing.errors.push(err);
    }
  }
  return listing;
}

function readHook(dir: string, name: string, checked: boolean): InstalledHook {
  const file = join(dir, name);
  const fail = (why: string, hint = "fix or remove it; every run refuses to start until then") =>
    new ConfigError(`hook "${file}": ${why}`, { hint });
  let json: unknown;
  try {
    json = JSON.parse(Deno.readTextFileSync(file));
  } catch (err) {
    throw fail(err instanceof SyntaxError ? `not JSON: ${err.message}` : (err as Error).message);
  }
  const parsed = tryShape(hookFile, json);
  if (!parsed.ok) throw fail(parsed.why);
  const { hook, when, stages } = parsed.value;
  let program: Deno.FileInfo;
  try {
    program = Deno.statSync(hook.path);
  } catch (err) {
    const why = err instanceof Deno.errors.NotFound ? "does not exist" : (err as Error).message;
    throw fail(`hook.path: ${hook.path} ${why}`, "install it, or remove the hook file");
  }
  if (!program.isFile) throw fail(`hook.path: ${hook.path} is not a file`);
  const [unsafe] = checked ? rootOnlyProblems(hook.path) : [];
  if (unsafe) throw new SecurityError(`hook "${file}": ${unsafe.message}`, { hint: unsafe.hint });
  return { name, hook, when, stages };
}

/** The installation's hooks for a run; throws the first unusable file's error. */
export function installedHooks(
  loaded: Pick<LoadedConfig, "paths"> & { config: Pick<LoadedConfig["config"], "securityChecks"> },
): InstalledHook[] {
  const { hooks, errors } = readHooks(loaded.paths.hooksDir, loaded.config.securityChecks);
  if (errors.length > 0) throw errors[0]!;
  return hooks;
}

/**
 * Why `hook` is not for this run, in a few words; undefined when it is.
 * Every condition set must hold (oci-hooks(5)); patterns match anywhere in
 * the string unless anchored, as Go's regexp.MatchString does.
 */
export function hookRefusal(hook: InstalledHook, facts: HookFacts): string | undefined {
  const { always, annotations, commands, hasBindMounts } = hook.when;
  if (always === false) return "when.always is false";
  if (hasBindMounts === true && !facts.hasBindMounts) return "no bind mounts (-v, --mount)";
  if (hasBindMounts === false) return "when.hasBindMounts is false";
  for (const [k, v] of Object.entries(annotations ?? {})) {
    const key = new RegExp(k);
    const value = new RegExp(v);
    const found = Object.entries(facts.annotations).some(([ak, av]) =>
      key.test(ak) && value.test(av)
    );
    if (!found) return `no --annotation matches ${k}=${v}`;
  }
  if (commands !== undefined && !commands.some((c) => new RegExp(c).test(facts.command))) {
    return `the command ${facts.command} matches no entry of when.commands`;
  }
  return undefined;
}

/** config.json's `hooks`: the matching hooks of each stage, in file order. */
export function selectHooks(hooks: InstalledHook[], facts: HookFacts): OciHooks {
  const out: OciHooks = {};
  for (const h of hooks) {
    if (hookRefusal(h, facts) !== undefined) continue;
    for (const s of h.stages) (out[s] ??= []).push({ ...h.hook });
  }
  return out;
}
