/** The run directory as `shoal run` opens it (runtime/rundir.ts), as a check. */
import { ShoalError } from "../errors.ts";
import { runBaseFor, type RunBaseWhere } from "../runtime/rundir.ts";
import type { Check } from "./check.ts";

/**
 * Opens the run base exactly as a run does, making it where a run would (as
 * every shoal command does for its cache); a refusal stops every run.
 */
export function runDirCheck(where: RunBaseWhere): Check {
  const base = { id: "rundir", title: "run directory" };
  try {
    const found = runBaseFor(where, true)!;
    if (found.notice !== undefined) {
      return {
        ...base,
        status: "warn",
        detail: `${found.path}; ${found.notice}`,
        fix: "an admin removes the directory another user made in its place",
      };
    }
    return { ...base, status: "ok", detail: found.path };
  } catch (err) {
    if (!(err instanceof Error)) throw err;
    return {
      ...base,
      status: "fail",
      detail: err.message,
      fix: (err instanceof ShoalError ? err.hint : undefined) ??
        "ask your admin (runDir in the site config)",
    };
  }
}
