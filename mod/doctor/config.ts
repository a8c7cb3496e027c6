/**
 * The configuration as doctor sees it. A broken site config or preferences
 * file must not stop the diagnosis: it becomes a failed check, and the other
 * probes go on with what still loads (the site config without the user's
 * preferences, or else the built-in defaults).
 */
import { join } from "node:path";
import { ShoalError } from "../errors.ts";
import { installLayout } from "../config/layout.ts";
import { type ConfigEnv, currentEnv, loadConfig, type LoadedConfig } from "../config/load.ts";
import { credentials, getpwuid } from "../sys/user.ts";
import type { Check } from "./report.ts";

export interface ConfigProblem {
  message: string;
  hint?: string;
  /** What the other checks used instead. */
  fallback: string;
}

export interface DoctorConfig {
  loaded: LoadedConfig;
  /** Why the configuration did not load as it is; `loaded` then holds what did. */
  problem?: ConfigProblem;
}

function problemOf(err: unknown, fallback: string): ConfigProblem {
  if (err instanceof ShoalError) return { message: err.message, hint: err.hint, fallback };
  if (err instanceof Error) return { message: err.message, fallback };
  throw err;
}

/**
 * The invoking user as config expansion needs it. currentEnv() wants USER and
 * HOME or an /etc/passwd entry; a directory user (LDAP) in a bare environment
 * has neither, but NSS still knows them.
 */
function doctorEnv(): { env: ConfigEnv; problem?: ConfigProblem } {
  try {
    return { env: currentEnv() };
  } catch (err) {
    const uid = credentials().uid;
    const entry = getpwuid(uid);
    if (entry === null) throw err;
    const problem = problemOf(err, "the user database's entry");
    return {
      env: { uid, user: entry.name, home: entry.home, path: Deno.env.get("PATH") },
      problem,
    };
  }
}

/** Loads the configuration without the security checks (doctor reports them itself). */
export async function loadForDoctor(): Promise<DoctorConfig> {
  const { env, problem: envProblem } = doctorEnv();
  const base = { env, securityChecks: false } as const;
  try {
    const loaded = await loadConfig(base);
    return envProblem === undefined ? { loaded } : { loaded, problem: envProblem };
  } catch (err) {
    try {
      const loaded = await loadConfig({ ...base, preferencesFile: null });
      return { loaded, problem: problemOf(err, "the site config without your preferences") };
    } catch {
      // The site config itself is broken: diagnose with the defaults, from a
      // config path known not to exist (a fresh private directory's).
      const layout = installLayout();
      const dir = await Deno.makeTempDir({ prefix: "shoal-doctor-" });
      try {
        const defaults = await loadConfig({
          ...base,
          preferencesFile: null,
          layout: { ...layout, configFile: join(dir, "shoal.json") },
        });
        return { loaded: { ...defaults, layout }, problem: problemOf(err, "the defaults") };
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    }
  }
}

export function configCheck({ loaded, problem }: DoctorConfig): Check {
  const base = { id: "config", title: "site configuration" };
  if (problem !== undefined) {
    return {
      ...base,
      status: "fail",
      detail: `${problem.message}; the other checks use ${problem.fallback}`,
      fix: problem.hint ?? `correct ${loaded.layout.configFile}`,
    };
  }
  if (loaded.file === undefined) {
    return { ...base, status: "ok", detail: `none at ${loaded.layout.configFile}: defaults apply` };
  }
  return { ...base, status: "ok", detail: loaded.file };
}
