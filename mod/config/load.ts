/**
 * Loads the site config and the user's preferences, validates them (or takes
 * the last validation of the same texts, cache.ts), expands `$HOME`/`$USER`,
 * finds the runtime tools, and runs the security checks. The files are read
 * with sync calls: every command starts here, and each async file call costs
 * ~0.5 ms in a fresh process (bench/startup.ts).
 */
import { ConfigError } from "../errors.ts";
import { isAbsolute, join } from "../path.ts";
import { type InstallLayout, installLayout } from "./layout.ts";
import type { SiteConfig, UserPreferences } from "./schema.ts";
import { type ConfigInputs, readCache, type ValidatedConfig, writeCache } from "./cache.ts";
import { checkTrust } from "./security.ts";
import { getpwuid } from "../sys/user.ts";
import { defineLazy } from "../lazy.ts";
import { VERSION } from "../version.ts";
import { runBaseFor, type RunBaseWhere } from "../runtime/rundir.ts";
import { fdPath } from "../sys/dirfd.ts";

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
  /** The user's environment, for the variables of their own preferences (localRepository). */
  variable?: (name: string) => string | undefined;
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
    variable: get,
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
  /** The installation passed the security checks as it was loaded (checkTrust). */
  installationChecked?: boolean;
  /** Where the caller's run directory is looked for (runtime/rundir.ts). */
  runBase: RunBaseWhere;
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
  /** Where the last validation is kept (cache.ts); default the user's default run dir; null: none. */
  cacheDir?: string | null;
}

/**
 * This build of shoal, for the validation cache: its version, and where this
 * module was loaded from. Installed, that is a bundle chunk named for a hash
 * of its content, which names the chunk of the schemas (import below) by its
 * own hash: a build with other schemas or defaults has another key.
 */
const BUILD = `${VERSION} ${import.meta.url}`;

export async function loadConfig(opts: LoadOptions = {}): Promise<LoadedConfig> {
  const env = opts.env ?? currentEnv();
  const layout = opts.layout ?? installLayout();
  const siteFile = opts.file ?? layout.configFile;
  const prefsFile = opts.preferencesFile === null
    ? undefined
    : opts.preferencesFile ?? defaultPreferencesFile(env);
  const inputs: ConfigInputs = {
    build: BUILD,
    siteFile,
    siteText: opts.file === null ? undefined : readText(siteFile, opts.file !== undefined),
    prefsFile,
    prefsText: prefsFile === undefined ? undefined : readText(prefsFile, false),
  };
  const defaultBase: RunBaseWhere = { uid: env.uid, xdgRuntimeDir: env.xdgRuntimeDir };
  const cacheDir = opts.cacheDir === null ? undefined : opts.cacheDir ?? cacheBase(defaultBase);
  const cached = cacheDir === undefined ? undefined : readCache(cacheDir, env.uid, inputs);
  const { config, preferences } = cached ?? await validated(inputs, cacheDir, env.uid);
  const repository = preferences?.localRepository;

  const loaded: LoadedConfig = {
    file: inputs.siteText === undefined ? undefined : siteFile,
    config,
    layout,
    paths: resolvePaths(
      config,
      layout,
      env,
      siteFile,
      repository && expand(repository, env, prefsFile!, "localRepository", env.variable),
    ),
    preferences: preferences ?? {},
    preferencesFile: preferences === undefined ? undefined : prefsFile,
    runBase: config.runDir === undefined ? defaultBase : {
      ...defaultBase,
      runDir: expand(config.runDir, env, siteFile, "runDir"),
    },
  };
  if (opts.securityChecks !== false) {
    checkTrust(loaded, { uid: env.uid, name: env.user });
    loaded.installationChecked = config.securityChecks;
  }
  return loaded;
}

/** Validates the texts (loading the schemas only now) and keeps the result for next time. */
async function validated(
  inputs: ConfigInputs,
  cacheDir: string | undefined,
  uid: number,
): Promise<ValidatedConfig> {
  const { validatePreferences, validateSiteConfig } = await import("./validate.ts");
  const result: ValidatedConfig = {
    config: validateSiteConfig(inputs.siteText, inputs.siteFile),
    preferences: inputs.prefsText === undefined
      ? undefined
      : validatePreferences(inputs.prefsText, inputs.prefsFile!, inputs.siteFile),
  };
  if (cacheDir) writeCache(cacheDir, uid, inputs, result);
  return result;
}

/** A file's text; undefined when it does not exist and is not `required`. */
function readText(file: string, required: boolean): string | undefined {
  try {
    return Deno.readTextFileSync(file);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound && !required) return undefined;
    const why = err instanceof Deno.errors.NotFound ? "no such file" : (err as Error).message;
    throw new ConfigError(`"${file}": cannot read: ${why}`, {
      hint: "check the path and its permissions",
      cause: err,
    });
  }
}

function defaultPreferencesFile(env: ConfigEnv): string {
  const base = absoluteOr(env.xdgConfigHome, join(env.home, ".config"));
  return join(base, "shoal", "config.json");
}

/** An XDG variable's value where it is usable: the spec says to ignore relative ones. */
function absoluteOr(value: string | undefined, fallback: string): string {
  return value !== undefined && isAbsolute(value) ? value : fallback;
}

const SYSTEM_PATH = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/** Runtime tools by config key, with the program names to look for in order of preference. */
const TOOLS = {
  runc: ["runc"],
  tar2sqfs: ["tar2sqfs"],
  mksquashfs: ["mksquashfs"],
  // The low-level squashfuse is several times faster (docs/design/architecture.md).
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
  const dirs = new Set([...searchPath.split(":").filter((d) => isAbsolute(d)), ...SYSTEM_PATH]);
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
  const site = (key: string, value: string) => expand(value, env, siteFile, key);
  const defaultRepository = join(
    absoluteOr(env.xdgDataHome, join(env.home, ".local", "share")),
    "shoal",
  );
  const siteRepository = config.repositories.local;
  const paths: ResolvedPaths = {
    helper: config.runtime.helper ?? layout.helper,
    hooksDir: config.hooksDir ?? layout.hooksDir,
    localRepository: userRepository !== undefined
      ? userRepository
      : siteRepository !== undefined
      ? site("repositories.local", siteRepository)
      : defaultRepository,
    centralizedRepository: config.repositories.centralized,
  };
  // Each tool is looked for on first use: a run needs two or three of them, and
  // looking costs a stat per directory searched.
  for (const tool of Object.keys(TOOLS) as Tool[]) {
    defineLazy(paths, tool, () => config.runtime[tool] ?? findTool(TOOLS[tool], env.path));
  }
  return paths;
}

/**
 * The directory of the default run base, held open (its fd path), where the
 * cache is kept; undefined where there is none to be had (nothing is cached).
 */
function cacheBase(where: RunBaseWhere): string | undefined {
  try {
    const base = runBaseFor(where, true);
    return base === undefined ? undefined : fdPath(base.fd);
  } catch {
    return undefined;
  }
}

/**
 * Expands `$HOME`, `${HOME}`, `$USER` and `${USER}`, and with `variable` (the
 * user's own preferences) any variable of the environment. Site keys get no
 * `variable`: the setuid helper reads them without the caller's environment,
 * so another variable there is an error that names it. The result must be absolute.
 */
export function expand(
  value: string,
  env: Pick<ConfigEnv, "home" | "user">,
  file: string,
  key: string,
  variable?: (name: string) => string | undefined,
): string {
  const expanded = value.replace(
    /\$(?:\{([^}]*)\}|([A-Za-z_][A-Za-z0-9_]*))/g,
    (_, braced, bare) => {
      const name = String(braced ?? bare);
      if (name === "HOME") return env.home;
      if (name === "USER") return env.user;
      if (variable === undefined) {
        throw new ConfigError(
          `"${file}": ${key}: unknown variable $${name} (only $HOME and $USER are expanded)`,
          {
            hint: `write the path out, e.g. "/scratch/$USER/shoal" for $${name}/shoal; ` +
              "a user's own localRepository (~/.config/shoal/config.json) may use any variable",
          },
        );
      }
      const found = variable(name);
      if (found === undefined || found === "") {
        throw new ConfigError(`"${file}": ${key}: $${name} is not set in your environment`, {
          hint: `set ${name}, or write the path out in "${file}"`,
        });
      }
      return found;
    },
  );
  if (!isAbsolute(expanded)) {
    throw new ConfigError(
      `"${file}": ${key}: "${value}" gives "${expanded}", not an absolute path`,
      { hint: "write an absolute path" },
    );
  }
  return expanded;
}
