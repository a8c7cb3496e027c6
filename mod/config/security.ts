/**
 * Security checks on the files an installation trusts: the site config, the
 * installation's `bin` and `libexec` directories, the setuid helper, runc,
 * the init program of `run --init` and the OCI hooks. Whoever can change one
 * of them, or replace it through any directory above it, controls what shoal
 * runs for every user, so each must be owned by root and not writable by
 * group or others, and so must every parent directory up to `/`.
 *
 * There is no exception for sticky world-writable directories such as /tmp.
 * The sticky bit stops others from renaming entries they do not own, but not
 * from creating a missing path component first or from squatting a name a
 * later install will use; nobody installs shoal there, and the setuid helper
 * applies the same rule, so one strict rule is simpler to trust.
 */
import { dirname, join, resolve } from "../path.ts";
import { SecurityError } from "../errors.ts";
import type { LoadedConfig } from "./load.ts";

export interface SecurityProblem {
  path: string;
  rule: "owner" | "writable" | "unreadable";
  /** One line: `"/opt/shoal/etc/shoal.json" must be owned by root`. */
  message: string;
  /** The command that fixes it. */
  hint: string;
}

/**
 * What one run has examined: paths, and files and directories by device and
 * inode. The chains of the trusted files share most of their directories,
 * and a run looks at each once: ~0.4 ms of every start.
 */
type Seen = Set<string>;

/** A user trusted besides root. */
export interface Owner {
  uid: number;
  name: string;
}

/**
 * Problems with one trusted path. A path that does not exist has none: there
 * is nothing to trust yet, and whatever needs it reports that it is missing.
 * `seen` lets one run skip directories it has already examined.
 */
export function pathProblems(
  path: string,
  seen: Seen = new Set(),
  alsoOwnedBy?: Owner,
): SecurityProblem[] {
  const absolute = resolve(path);
  let real: string;
  try {
    real = Deno.realPathSync(absolute);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return [];
    return [unreadable(absolute, err)];
  }
  // Both chains are checked. The path as named: whoever can write a directory
  // on it (including one holding a symlink) can point the name elsewhere. The
  // resolved target: whoever can write there can replace the file itself.
  const problems: SecurityProblem[] = [];
  for (const p of [...chain(absolute), ...chain(real)]) {
    problems.push(...entryProblems(p, seen, alsoOwnedBy));
  }
  return problems;
}

/** `path` and each directory above it, nearest first, ending at `/`. */
function chain(path: string): string[] {
  const out = [path];
  for (let p = path; p !== "/"; out.push(p)) p = dirname(p);
  return out;
}

function entryProblems(path: string, seen: Seen, alsoOwnedBy?: Owner): SecurityProblem[] {
  if (seen.has(path)) return [];
  seen.add(path);
  let info: Deno.FileInfo;
  try {
    info = Deno.lstatSync(path);
  } catch (err) {
    return [unreadable(path, err)];
  }
  const key = `${info.dev}:${info.ino}`;
  if (seen.has(key)) return [];
  seen.add(key);
  const problems: SecurityProblem[] = [];
  if (info.uid !== 0 && info.uid !== alsoOwnedBy?.uid) {
    problems.push({
      path,
      rule: "owner",
      message: `"${path}" must be owned by root${alsoOwnedBy ? ` or ${alsoOwnedBy.name}` : ""}`,
      hint: `run: chown root:root "${path}"`,
    });
  }
  // A symlink's own mode bits are always 0777 and never consulted by Linux.
  if (!info.isSymlink && ((info.mode ?? 0) & 0o022) !== 0) {
    problems.push({
      path,
      rule: "writable",
      message: `"${path}" must not be writable by group or others`,
      hint: `run: chmod go-w "${path}"`,
    });
  }
  return problems;
}

function unreadable(path: string, err: unknown): SecurityProblem {
  const why = err instanceof Error ? err.message : String(err);
  return {
    path,
    rule: "unreadable",
    message: `"${path}" cannot be checked: ${why}`,
    hint: "make it and every directory above it readable, or ask your admin",
  };
}

/** What an installation trusts, as loaded. */
export type TrustedPaths = Pick<LoadedConfig, "file"> & {
  layout: Pick<LoadedConfig["layout"], "prefix" | "execShim">;
  paths: Pick<LoadedConfig["paths"], "helper" | "runc" | "init" | "hooksDir">;
};

/**
 * Every security problem of an installation, without throwing (for `shoal
 * doctor`): the site config file, `<prefix>/bin` (shoal itself) and
 * `<prefix>/libexec` (where the helper goes, even before it is installed),
 * the helper, the exec shim (run in containers), runc, the init program, the
 * hooks dir and each entry in it,
 * where they exist. A directory shared by several of them is reported once.
 */
export function installationProblems(loaded: TrustedPaths): SecurityProblem[] {
  const seen: Seen = new Set();
  const { prefix } = loaded.layout;
  const { helper, runc, init, hooksDir } = loaded.paths;
  const problems: SecurityProblem[] = [];
  const trusted = [
    loaded.file,
    join(prefix, "bin"),
    join(prefix, "libexec"),
    helper,
    loaded.layout.execShim,
    runc,
    init,
    hooksDir,
  ];
  for (const path of trusted) {
    if (path !== undefined) problems.push(...pathProblems(path, seen));
  }
  let hooks: string[] = [];
  try {
    // Sorted so that reports are stable.
    hooks = [...Deno.readDirSync(hooksDir)].map((e) => join(hooksDir, e.name)).sort();
  } catch (err) {
    const missing = err instanceof Deno.errors.NotFound || err instanceof Deno.errors.NotADirectory;
    if (!missing) problems.push(unreadable(hooksDir, err));
  }
  for (const hook of hooks) problems.push(...pathProblems(hook, seen));
  return problems;
}

/** Throws the first problem of `installationProblems` as a SecurityError. */
export function checkInstallation(loaded: TrustedPaths): void {
  throwFirst(installationProblems(loaded));
}

/**
 * A config file that turns the checks off must itself be safe from other
 * users, or any of them could turn them off: owned (with every directory
 * above it) by root or by `user`, and not writable by group or others. This
 * is what lets a home-directory install (`install.sh --user`) run unchecked.
 */
export function checkUncheckedConfig(file: string, user: Owner): void {
  throwFirst(pathProblems(file, new Set(), user));
}

function throwFirst(problems: SecurityProblem[]): void {
  const [first] = problems;
  if (first) throw new SecurityError(first.message, { hint: first.hint });
}
