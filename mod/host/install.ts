/** Probes of the installation: the setuid helper and the security checks of trusted files. */
import {
  helperTrustProblems,
  isUserInstall,
  type SecurityProblem,
  trustProblems,
} from "../config/security.ts";
import type { LoadedConfig } from "../config/load.ts";
import { MountFlag, statfs } from "../sys/fs.ts";
import type { Check } from "./check.ts";

function octal(mode: number): string {
  return (mode & 0o7777).toString(8).padStart(4, "0");
}

/** One check's failure from security problems: the first, a count of the rest, every fix once. */
function problemsFailure(problems: SecurityProblem[]): Pick<Check, "status" | "detail" | "fix"> {
  const [first, ...more] = problems;
  const others = more.length === 0 ? "" : ` (and ${more.length} more)`;
  return {
    status: "fail",
    detail: `${first!.message}${others}`,
    fix: [...new Set(problems.map((p) => p.hint))].join("; "),
  };
}

/**
 * The exec shim that carries a command or environment that is not UTF-8 into
 * the container (runtime/raw_bytes.ts): without it only such runs are refused.
 */
export function execShimCheck(loaded: LoadedConfig): Check {
  const base = { id: "exec-shim", title: "shoal-exec shim" };
  const path = loaded.layout.execShim;
  let info: Deno.FileInfo | undefined;
  try {
    info = Deno.statSync(path);
  } catch {
    // Missing, or not to be looked at: either way runs cannot use it.
  }
  if (info?.isFile && ((info.mode ?? 0) & 0o111) !== 0) {
    return {
      ...base,
      status: "ok",
      detail: `${path}: commands and environments that are not UTF-8 pass byte for byte`,
    };
  }
  return {
    ...base,
    status: "warn",
    detail: `not installed at ${path}: a run whose command or environment is not UTF-8 is refused`,
    fix: loaded.layout.kind === "checkout"
      ? "run shoal from an installation (./install.sh builds shoal-exec)"
      : "install gcc, make and libc6-dev, then run ./install.sh again (it builds shoal-exec)",
  };
}

/**
 * The helper: installed, root-owned, setuid, not writable by others, on a
 * suid mount, and trusting its installation (its own rule: helperTrustProblems).
 */
export function helperCheck(loaded: LoadedConfig): Check {
  const base = { id: "helper", title: "shoal-mount helper" };
  const path = loaded.paths.helper;
  if (isUserInstall(loaded)) {
    return {
      ...base,
      status: "warn",
      detail: "none in a user install: your containers run on the unprivileged path (squashfuse)",
      fix: "nothing to do for you; kernel-mounted images need your admin's site install of shoal",
    };
  }
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(path);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) {
      return {
        ...base,
        status: "fail",
        detail: `${path}: ${(err as Error).message}`,
        fix: `ls -l ${path}`,
      };
    }
    return {
      ...base,
      status: "warn",
      detail: `not installed at ${path}: only the unprivileged path is available`,
      fix: loaded.layout.kind === "checkout"
        ? "as root, from the checkout: ./install.sh --prefix /opt/shoal (installs shoal with " +
          "the helper setuid root), then run /opt/shoal/bin/shoal"
        : `as root: ./install.sh --prefix ${loaded.layout.prefix} (installs it setuid root)`,
    };
  }
  const mode = info.mode ?? 0;
  const detail = `${path} (owner uid ${info.uid}, mode ${octal(mode)})`;
  const repair = `chown root:root ${path} && chmod 4755 ${path}`;
  if (info.uid !== 0 || (mode & 0o4000) === 0) {
    return { ...base, status: "fail", detail: `${detail}: not setuid root`, fix: repair };
  }
  if ((mode & 0o022) !== 0) {
    return {
      ...base,
      status: "fail",
      detail: `${detail}: writable by group or others`,
      fix: repair,
    };
  }
  if ((statfs(path).flags & MountFlag.NOSUID) !== 0) {
    return {
      ...base,
      status: "fail",
      detail: `${detail}: on a filesystem mounted nosuid, so it runs without privileges`,
      fix: `install shoal under a prefix on a filesystem mounted without nosuid`,
    };
  }
  // With the installation checked as it loaded, the helper's own rule has passed too.
  const distrusted = loaded.installationChecked ? [] : helperTrustProblems(loaded);
  if (distrusted.length > 0) return { ...base, ...problemsFailure(distrusted) };
  return { ...base, status: "ok", detail: `${detail}, setuid root` };
}

/**
 * The installation's security checks, as every shoal command runs them for
 * `user` (trustProblems), collected instead of thrown: a failure stops every
 * run. The site config file is checked even when it failed to load: a
 * tampered file is the first thing an admin should hear of.
 */
export function securityCheck(loaded: LoadedConfig, user: { uid: number; name: string }): Check {
  const base = { id: "security", title: "installation security" };
  const file = loaded.file ?? loaded.layout.configFile;
  let problems;
  try {
    // Checked moments ago (the run path): walking every parent again costs ~0.5 ms.
    problems = loaded.installationChecked
      ? []
      : trustProblems({ ...loaded, file: loaded.file ?? file }, user);
  } catch (err) {
    return {
      ...base,
      status: "fail",
      detail: `cannot check: ${(err as Error).message}`,
      fix: `make ${loaded.paths.hooksDir} readable`,
    };
  }
  if (problems.length > 0) return { ...base, ...problemsFailure(problems) };
  if (isUserInstall(loaded)) {
    return {
      ...base,
      status: "ok",
      detail: `a user install: ${file} and every directory above it are yours or root's, ` +
        "and not writable by others",
    };
  }
  const checked =
    "config, bin, libexec, helper, runc, init and hooks are root-owned and not writable by others";
  if (!loaded.config.securityChecks) {
    return {
      ...base,
      status: "warn",
      detail: "the site config turns the checks off (the helper still applies its own)",
      fix: `remove "securityChecks": false from ${file}`,
    };
  }
  return { ...base, status: "ok", detail: checked };
}
