/**
 * The configuration as doctor sees it. A broken site config or preferences
 * file must not stop the diagnosis: it becomes a failed check, and the other
 * probes go on with what still loads (the site config without the user's
 * preferences, or else the built-in defaults).
 */
import { ShoalError } from "../errors.ts";
import { currentEnv, loadConfig, type LoadedConfig } from "../config/load.ts";
import type { Check } from "../host/check.ts";

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

/** Loads the configuration without the security checks (doctor reports them itself). */
export async function loadForDoctor(): Promise<DoctorConfig> {
  const base = { env: currentEnv(), securityChecks: false } as const;
  try {
    return { loaded: await loadConfig(base) };
  } catch (err) {
    try {
      const loaded = await loadConfig({ ...base, preferencesFile: null });
      return { loaded, problem: problemOf(err, "the site config without your preferences") };
    } catch {
      // The site config itself is broken: diagnose with the built-in defaults.
      const defaults = await loadConfig({ ...base, preferencesFile: null, file: null });
      return { loaded: defaults, problem: problemOf(err, "the defaults") };
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
