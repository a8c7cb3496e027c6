/** Probes of the installation: the setuid helper and the security checks of trusted files. */
import { installationProblems } from "../config/security.ts";
import type { LoadedConfig } from "../config/load.ts";
import { MountFlag, statfs } from "../sys/fs.ts";
import type { Check } from "./report.ts";

function octal(mode: number): string {
  return (mode & 0o7777).toString(8).padStart(4, "0");
}

/** The helper: installed, root-owned, setuid, not writable by others, on a suid mount. */
export function helperCheck(loaded: LoadedConfig): Check {
  const base = { id: "helper", title: "shoal-mount helper" };
  const path = loaded.paths.helper;
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
  return { ...base, status: "ok", detail: `${detail}, setuid root` };
}

/**
 * The installation's security checks (as every shoal command runs them),
 * collected instead of thrown. The site config file is checked even when it
 * failed to load: a tampered file is the first thing an admin should hear of.
 */
export function securityCheck(loaded: LoadedConfig): Check {
  const base = { id: "security", title: "installation security" };
  const file = loaded.file ?? loaded.layout.configFile;
  let problems;
  try {
    // Checked moments ago (the run path): walking every parent again costs ~0.5 ms.
    problems = loaded.installationChecked
      ? []
      : installationProblems({ file, layout: loaded.layout, paths: loaded.paths });
  } catch (err) {
    return {
      ...base,
      status: "fail",
      detail: `cannot check: ${(err as Error).message}`,
      fix: `make ${loaded.paths.hooksDir} readable`,
    };
  }
  const [first, ...more] = problems;
  if (first !== undefined) {
    const others = more.length === 0 ? "" : ` (and ${more.length} more)`;
    return {
      ...base,
      status: "fail",
      detail: `${first.message}${others}`,
      fix: [...new Set(problems.map((p) => p.hint))].join("; "),
    };
  }
  const checked =
    "config, bin, libexec, helper, runc, init and hooks are root-owned and not writable by others";
  if (!loaded.config.securityChecks) {
    return {
      ...base,
      status: "warn",
      detail: `${checked}, but the site config turns the checks off`,
      fix: `remove "securityChecks": false from ${file}`,
    };
  }
  return { ...base, status: "ok", detail: checked };
}
