/**
 * Loads the site config and the user's preferences, validates them, expands
 * `$HOME`/`$USER`, finds the runtime tools, and runs the security checks.
 * The files are read with sync calls: every command starts here, and each
 * async file call costs ~0.5 ms in a fresh process (bench/startup.ts).
 */
import * as z from "../zod.ts";
import { ConfigError } from "../errors.ts";
import { isAbsolute, join } from "../path.ts";
import { jsonSyntaxError } from "./json.ts";
import { type InstallLayout, installLayout } from "./layout.ts";
import {
  type SiteConfig,
  siteConfigSchema,
  type UserPreferences,
  userPreferencesSchema,
} from "./schema.ts";
import { checkInstallation, checkUncheckedConfig } from "./security.ts";
import { closestName } from "../suggest.ts";
import { getpwuid } from "../sys/user.ts";

/** Who runs shoal, and the environment config values are expanded with. */
export interface ConfigEnv {
  uid: number;
  user: string;
  home: string;
  xdgDataHome?: string;
  xdgRuntimeDir?: string;
  xdgConfigHome?: string;
  /** The user's PATH, searched for runtime tools before the system directories. */
  path?: string;
}

/** The invoking user: environment first, the user database (NSS: LDAP users too) where it is silent. */
export function currentEnv(): ConfigEnv {
  const uid = Deno.uid();
  if (uid === null) throw new ConfigError("shoal runs only on Linux");
  const get = (name: string) => Deno.env.get(name) || undefined;
  const entry = getpwuid(uid);
  const user = get("USER") ?? get("LOGNAME") ?? entry?.name;
  const home = get("HOME") ?? entry?.home;
  if (user === undefined || home === undefined) {
    throw new ConfigError(
      `cannot tell who you are: ${user === undefined ? "USER" : "HOME"} is not set ` +
        `and uid ${uid} is not in the user database`,
      { hint: "set USER and HOME" },
    );
  }
  return {
    uid,
    user,
    home,
    xdgDataHome: get("XDG_DATA_HOME"),
    xdgRuntimeDir: get("XDG_RUNTIME_DIR"),
    xdgConfigHome: get("XDG_CONFIG_HOME"),
    path: get("PATH"),
  };
}

/** Absolute paths of everything shoal uses, after defaults, preferences and expansion. */
export interface ResolvedPaths {
  runc?: string;
  tar2sqfs?: string;
  mksquashfs?: string;
  squashfuse?: string;
  fusermount?: string;
  newuidmap?: string;
  newgidmap?: string;
  init?: string;
  helper: string;
  hooksDir: string;
  localRepository: string;
  centralizedRepository?: string;
  runDir: string;
}

export interface LoadedConfig {
  /** The site config file read; undefined when there was none (built-in defaults). */
  file?: string;
  config: SiteConfig;
  layout: InstallLayout;
  paths: ResolvedPaths;
  preferences: UserPreferences;
  /** The user preferences file read; undefined when there was none. */
  preferencesFile?: string;
}

export interface LoadOptions {
  layout?: InstallLayout;
  /** A site config other than the layout's; unlike the layout's, it must exist. null: defaults only. */
  file?: string | null;
  env?: ConfigEnv;
  /** Default `$XDG_CONFIG_HOME/shoal/config.json`; null reads none. */
  preferencesFile?: string | null;
  /** false skips the security checks whatever the config says (tests, admin tools). */
  securityChecks?: boolean;
}

// Async for its callers, which hold its result as a promise; the reading is sync (see above).
// deno-lint-ignore require-await
export async function loadConfig(opts: LoadOptions = {}): Promise<LoadedConfig> {
  const env = opts.env ?? currentEnv();
  const layout = opts.layout ?? installLayout();
  const siteFile = opts.file ?? layout.configFile;
  const siteData = opts.file === null ? undefined : readJson(siteFile, opts.file !== undefined);
  const config = validate(siteConfigSchema, siteData ?? {}, siteFile);

  const prefsPath = opts.preferencesFile === null
    ? undefined
    : opts.preferencesFile ?? defaultPreferencesFile(env);
  const prefs = prefsPath === undefined ? undefined : readPreferences(prefsPath, siteFile, env);

  const loaded: LoadedConfig = {
    file: siteData === undefined ? undefined : siteFile,
    config,
    layout,
    paths: resolvePaths(config, layout, env, siteFile, prefs?.localRepository),
    preferences: prefs?.preferences ?? {},
    preferencesFile: prefs === undefined ? undefined : prefsPath,
  };
  if (opts.securityChecks !== false) {
    if (config.securityChecks) checkInstallation(loaded);
    else if (loaded.file) checkUncheckedConfig(loaded.file, { uid: env.uid, name: env.user });
  }
  return loaded;
}

function defaultPreferencesFile(env: ConfigEnv): string {
  const base = absoluteOr(env.xdgConfigHome, join(env.home, ".config"));
  return join(base, "shoal", "config.json");
}

/** An XDG variable's value where it is usable: the spec says to ignore relative ones. */
function absoluteOr(value: string | undefined, fallback: string): string {
  return value !== undefined && isAbsolute(value) ? value : fallback;
}

/** The parsed file; undefined when it does not exist and is not `required`. */
function readJson(file: string, required: boolean): unknown {
  let text: string;
  try {
    text = Deno.readTextFileSync(file);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound && !required) return undefined;
    const why = err instanceof Deno.errors.NotFound ? "no such file" : (err as Error).message;
    throw new ConfigError(`"${file}": cannot read: ${why}`, {
      hint: "check the path and its permissions",
      cause: err,
    });
  }
  const syntax = jsonSyntaxError(text);
  if (syntax) {
    throw new ConfigError(
      `"${file}": invalid JSON at line ${syntax.line}, column ${syntax.column}: ${syntax.problem}`,
      { hint: "the file must hold one JSON object, without comments or trailing commas" },
    );
  }
  return JSON.parse(text);
}

const README_HINT = 'see "Configuration" in README.md';

function validate<S extends z.ZodMiniType>(schema: S, data: unknown, file: string): z.output<S> {
  const result = schema.safeParse(data);
  if (result.success) return result.data;
  // zod reports at least one issue on failure; the first is the one to fix first.
  const [issue, ...more] = result.error.issues as [z.core.$ZodIssue, ...z.core.$ZodIssue[]];
  const { where, what, hint } = describeIssue(issue, schema, data);
  const n = more.length;
  const others = n === 0 ? "" : `; ${n} more problem${n === 1 ? "" : "s"} in the file`;
  throw new ConfigError(`"${file}": ${where ? `${where}: ` : ""}${what}`, {
    hint: hint + others,
  });
}

/**
 * The user's preferences, with their local repository expanded; undefined
 * when the file does not exist. User preferences may hold only their own
 * keys. A site key there gets its own message, so that nobody mistakes it for
 * a typo and keeps trying.
 */
function readPreferences(
  file: string,
  siteFile: string,
  env: ConfigEnv,
): { preferences: UserPreferences; localRepository?: string } | undefined {
  const data = readJson(file, false);
  if (data === undefined) return undefined;
  if (isObject(data)) {
    const allowed = Object.keys(userPreferencesSchema.shape);
    const siteKey = Object.keys(data).find((k) =>
      !allowed.includes(k) && k in siteConfigSchema.shape
    );
    if (siteKey !== undefined) {
      throw new ConfigError(
        `"${file}": ${siteKey} cannot be set in user preferences (only ${allowed.join(", ")}); ` +
          `ask your admin to set it in ${siteFile}`,
        { hint: `remove "${siteKey}" from "${file}"` },
      );
    }
  }
  const preferences = validate(userPreferencesSchema, data, file);
  const repository = preferences.localRepository;
  return {
    preferences,
    localRepository: repository && expand(repository, env, file, "localRepository"),
  };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** A zod issue as `where` (the key's JSON path), `what` was expected, and a hint. */
function describeIssue(
  issue: z.core.$ZodIssue,
  schema: z.ZodMiniType,
  data: unknown,
): { where: string; what: string; hint: string } {
  const path = issue.path.filter((k): k is string | number => typeof k !== "symbol");
  const value = valueAt(data, path);
  const got = ` (got ${describeValue(value)})`;
  switch (issue.code) {
    case "unrecognized_keys": {
      const [key = ""] = issue.keys;
      const valid = keysAt(schema, path);
      const close = closestName(key, valid);
      return {
        where: renderPath([...path, key]),
        what: `unknown key${close ? ` (did you mean ${close}?)` : ""}`,
        hint: `valid keys${path.length ? ` in ${renderPath(path)}` : ""}: ${valid.join(", ")}`,
      };
    }
    case "invalid_type":
      return {
        where: renderPath(path),
        what: value === undefined ? "is required" : `must be ${noun(issue.expected)}${got}`,
        hint: README_HINT,
      };
    case "invalid_value": {
      const values = issue.values.map((v) => JSON.stringify(v));
      const what = values.length === 1 ? values[0] : `one of ${values.join(", ")}`;
      return { where: renderPath(path), what: `must be ${what}${got}`, hint: README_HINT };
    }
    case "invalid_key": {
      const inner = issue.issues[0]?.message ?? "is not allowed";
      return {
        where: renderPath(path.slice(0, -1)),
        what: `key ${JSON.stringify(path.at(-1))} ${inner}`,
        hint: README_HINT,
      };
    }
    case "too_small":
    case "too_big":
      return { where: renderPath(path), what: `${bound(issue)}${got}`, hint: README_HINT };
    case "invalid_format":
      if (issue.format === "url") {
        return { where: renderPath(path), what: `must be a URL${got}`, hint: README_HINT };
      }
      return { where: renderPath(path), what: issue.message, hint: README_HINT };
    default:
      // Custom checks (absolute paths, block sizes, names) carry their own wording.
      return { where: renderPath(path), what: issue.message, hint: README_HINT };
  }
}

function bound(issue: z.core.$ZodIssueTooSmall | z.core.$ZodIssueTooBig): string {
  const small = issue.code === "too_small";
  const limit = Number(small ? issue.minimum : issue.maximum);
  if (issue.origin === "string" && small && limit === 1) return "must not be empty";
  if (issue.origin === "array" || issue.origin === "string") {
    const unit = issue.origin === "array" ? "entries" : "characters";
    return `must have ${small ? "at least" : "at most"} ${limit} ${unit}`;
  }
  if (issue.inclusive === false) return `must be ${small ? "more" : "less"} than ${limit}`;
  return `must be ${small ? "at least" : "at most"} ${limit}`;
}

function noun(expected: string): string {
  const nouns: Record<string, string> = {
    int: "an integer",
    number: "a number",
    string: "a string",
    boolean: "true or false",
    object: "an object",
    array: "an array",
  };
  return nouns[expected] ?? expected;
}

function describeValue(v: unknown): string {
  if (Array.isArray(v)) return "an array";
  if (isObject(v)) return "an object";
  return JSON.stringify(v) ?? String(v);
}

function valueAt(data: unknown, path: (string | number)[]): unknown {
  let cur = data;
  for (const k of path) {
    if (typeof cur !== "object" || cur === null) return undefined;
    cur = (cur as Record<string | number, unknown>)[k];
  }
  return cur;
}

/** `mounts[0].source`, `registries.ca["localhost:5000"]`. */
function renderPath(path: (string | number)[]): string {
  let out = "";
  for (const k of path) {
    if (typeof k === "number") out += `[${k}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) out += out ? `.${k}` : k;
    else out += `[${JSON.stringify(k)}]`;
  }
  return out;
}

/** The keys the schema allows in the object at `path`, for "did you mean". */
function keysAt(schema: z.ZodMiniType, path: (string | number)[]): string[] {
  let cur = unwrap(schema);
  for (const k of path) {
    if (cur instanceof z.ZodMiniObject) cur = unwrap(cur.shape[k]);
    else if (cur instanceof z.ZodMiniArray) cur = unwrap(cur.def.element);
    else if (cur instanceof z.ZodMiniRecord) cur = unwrap(cur.def.valueType);
    else return [];
  }
  return cur instanceof z.ZodMiniObject ? Object.keys(cur.shape) : [];
}

/** The schema under optional/default/prefault wrappers. */
function unwrap(schema: z.core.$ZodType | undefined): z.core.$ZodType | undefined {
  let cur = schema;
  while (
    cur instanceof z.ZodMiniOptional || cur instanceof z.ZodMiniDefault ||
    cur instanceof z.ZodMiniPrefault
  ) {
    cur = cur.def.innerType;
  }
  return cur;
}

const SYSTEM_PATH = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/** Runtime tools by config key, with the program names to look for in order of preference. */
const TOOLS = {
  runc: ["runc"],
  tar2sqfs: ["tar2sqfs"],
  mksquashfs: ["mksquashfs"],
  // The low-level squashfuse is several times faster (see DESIGN.md).
  squashfuse: ["squashfuse_ll", "squashfuse"],
  fusermount: ["fusermount3", "fusermount"],
  newuidmap: ["newuidmap"],
  newgidmap: ["newgidmap"],
  init: ["catatonit", "tini"],
} as const;

type Tool = keyof typeof TOOLS;

/**
 * The first of `names` found as an executable file in `searchPath` (a PATH
 * value) or the system directories; runc lives in /usr/sbin, which a user's
 * PATH often lacks. Relative PATH entries are skipped: they name whatever
 * directory shoal happens to run in.
 */
export function findTool(names: readonly string[], searchPath = ""): string | undefined {
  const dirs = [...searchPath.split(":").filter((d) => isAbsolute(d)), ...SYSTEM_PATH];
  for (const name of names) {
    for (const dir of dirs) {
      const candidate = join(dir, name);
      if (isExecutableFile(candidate)) return candidate;
    }
  }
  return undefined;
}

function isExecutableFile(path: string): boolean {
  try {
    const info = Deno.statSync(path);
    return info.isFile && ((info.mode ?? 0) & 0o111) !== 0;
  } catch {
    return false;
  }
}

/** `userRepository`: the user preferences' local repository, already expanded. */
function resolvePaths(
  config: SiteConfig,
  layout: InstallLayout,
  env: ConfigEnv,
  siteFile: string,
  userRepository: string | undefined,
): ResolvedPaths {
  const tools: Partial<Record<Tool, string>> = {};
  for (const tool of Object.keys(TOOLS) as Tool[]) {
    tools[tool] = config.runtime[tool] ?? findTool(TOOLS[tool], env.path);
  }
  const site = (key: string, value: string) => expand(value, env, siteFile, key);
  const defaultRepository = join(
    absoluteOr(env.xdgDataHome, join(env.home, ".local", "share")),
    "shoal",
  );
  const siteRepository = config.repositories.local;
  return {
    ...tools,
    helper: config.runtime.helper ?? layout.helper,
    hooksDir: config.hooksDir ?? layout.hooksDir,
    localRepository: userRepository !== undefined
      ? userRepository
      : siteRepository !== undefined
      ? site("repositories.local", siteRepository)
      : defaultRepository,
    centralizedRepository: config.repositories.centralized,
    runDir: config.runDir !== undefined ? site("runDir", config.runDir) : defaultRunDir(env.uid),
  };
}

/**
 * Where runs live by default: the setuid helper's rule, which shoal must
 * follow so that the helper accepts its bundles. The environment
 * ($XDG_RUNTIME_DIR) is not trusted: /run/user/UID/shoal when /run/user/UID is
 * a directory of the user's (systemd's per-user tmpfs), else /tmp/shoal-UID.
 */
export function defaultRunDir(uid: number, base = "/run/user"): string {
  const own = join(base, String(uid));
  try {
    const info = Deno.statSync(own);
    if (info.isDirectory && info.uid === uid) return join(own, "shoal");
  } catch { /* no per-user runtime dir */ }
  return `/tmp/shoal-${uid}`;
}

/** Expands `$HOME`, `${HOME}`, `$USER` and `${USER}`; any other variable is an error. */
export function expand(
  value: string,
  env: Pick<ConfigEnv, "home" | "user">,
  file: string,
  key: string,
): string {
  return value.replace(/\$(?:\{([^}]*)\}|([A-Za-z_][A-Za-z0-9_]*))/g, (_, braced, bare) => {
    const name = String(braced ?? bare);
    if (name === "HOME") return env.home;
    if (name === "USER") return env.user;
    throw new ConfigError(
      `"${file}": ${key}: unknown variable $${name} (only $HOME and $USER are expanded)`,
      { hint: "write the path out, or use $HOME or $USER" },
    );
  });
}
