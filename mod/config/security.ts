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
 *
 * A fix is a command only for what belongs to the installation (a trusted
 * file itself, or a directory at or below the prefix). A directory above it
 * (/, /tmp, /home, a user's home) is the machine's or another person's:
 * loosening or taking it would harm far more than shoal, so the fix there is
 * to install shoal elsewhere.
 */
import { dirname, join, resolve } from "../path.ts";
import { SecurityError } from "../errors.ts";
import type { LoadedConfig } from "./load.ts";
import type { SiteConfig } from "./schema.ts";

export interface SecurityProblem {
  path: string;
  rule: "owner" | "writable" | "unreadable";
  /** One line: `"/opt/shoal/etc/shoal.json" must be owned by root`. */
  message: string;
  /** What fixes it without harming anything else (see the header). */
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

/** Whose the trusted files are: root's (a site install), or also `alsoOwnedBy`'s (a user install). */
interface Trust {
  seen: Seen;
  /** Whether each path examined is a symlink: a chain without one needs no resolving. */
  links: Map<string, boolean>;
  alsoOwnedBy?: Owner;
  /** The installation's prefix: what is at or below it may be fixed in place. */
  prefix: string;
}

function trustIn(prefix: string, alsoOwnedBy?: Owner): Trust {
  return { seen: new Set(), links: new Map(), prefix, ...(alsoOwnedBy && { alsoOwnedBy }) };
}

/**
 * Problems with one trusted path. A path that does not exist has none: there
 * is nothing to trust yet, and whatever needs it reports that it is missing.
 * `trust.seen` lets one run skip directories it has already examined.
 */
function pathProblems(path: string, trust: Trust): SecurityProblem[] {
  const absolute = resolve(path);
  // Both chains are checked. The path as named: whoever can write a directory
  // on it (including one holding a symlink) can point the name elsewhere. The
  // resolved target: whoever can write there can replace the file itself.
  // Without a symlink on the way, both are the same chain.
  const named = chain(absolute);
  const problems: SecurityProblem[] = [];
  for (const p of named) {
    const found = entryProblems(p, trust, p === absolute);
    if (found === MISSING) return [];
    problems.push(...found);
  }
  if (!named.some((p) => trust.links.get(p))) return problems;
  let real: string;
  try {
    real = Deno.realPathSync(absolute);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return [];
    return [unreadable(absolute, err)];
  }
  for (const p of chain(real)) {
    const found = entryProblems(p, trust, p === real);
    if (found !== MISSING) problems.push(...found);
  }
  return problems;
}

/** `path` and each directory above it, nearest first, ending at `/`. */
function chain(path: string): string[] {
  const out = [path];
  for (let p = path; p !== "/"; out.push(p)) p = dirname(p);
  return out;
}

/** A path that does not exist: nothing to trust yet, and whatever needs it says it is missing. */
const MISSING = Symbol("missing");

function entryProblems(
  path: string,
  trust: Trust,
  trusted: boolean,
): SecurityProblem[] | typeof MISSING {
  const { seen, alsoOwnedBy, prefix } = trust;
  if (seen.has(path)) return [];
  let info: Deno.FileInfo;
  try {
    info = Deno.lstatSync(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return MISSING;
    seen.add(path);
    return [unreadable(path, err)];
  }
  seen.add(path);
  trust.links.set(path, info.isSymlink);
  const key = `${info.dev}:${info.ino}`;
  if (seen.has(key)) return [];
  seen.add(key);
  const problems: SecurityProblem[] = [];
  const ours = trusted || path === prefix || path.startsWith(`${prefix}/`);
  if (info.uid !== 0 && info.uid !== alsoOwnedBy?.uid) {
    problems.push({
      path,
      rule: "owner",
      message: `"${path}" must be owned by root${alsoOwnedBy ? ` or ${alsoOwnedBy.name}` : ""}`,
      hint: !ours
        ? moveAway(path, alsoOwnedBy)
        : alsoOwnedBy
        ? `reinstall with ./install.sh --user, which makes its files yours`
        : `run: chown root:root "${path}"`,
    });
  }
  // A symlink's own mode bits are always 0777 and never consulted by Linux.
  if (!info.isSymlink && ((info.mode ?? 0) & 0o022) !== 0) {
    problems.push({
      path,
      rule: "writable",
      message: `"${path}" must not be writable by group or others`,
      hint: ours ? `run: chmod go-w "${path}"` : moveAway(path, alsoOwnedBy),
    });
  }
  return problems;
}

/** The fix for a directory above the installation: move shoal, leave the directory alone. */
function moveAway(path: string, user: Owner | undefined): string {
  const where = user
    ? "./install.sh --user --prefix DIR, DIR in a directory only you and root can write"
    : "./install.sh --prefix DIR, DIR in a directory only root can write (e.g. /opt/shoal)";
  return `leave "${path}" as it is (it is not shoal's to change) and install shoal elsewhere: ` +
    `${where}; then remove this installation with ./install.sh --uninstall`;
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
  const { prefix } = loaded.layout;
  const trust = trustIn(prefix);
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
    if (path !== undefined) problems.push(...pathProblems(path, trust));
  }
  let hooks: string[] = [];
  try {
    // Sorted so that reports are stable.
    hooks = [...Deno.readDirSync(hooksDir)].map((e) => join(hooksDir, e.name)).sort();
  } catch (err) {
    const missing = err instanceof Deno.errors.NotFound || err instanceof Deno.errors.NotADirectory;
    if (!missing) problems.push(unreadable(hooksDir, err));
  }
  for (const hook of hooks) problems.push(...pathProblems(hook, trust));
  return problems;
}

/**
 * The helper's own rule (helper/main.c, "What it trusts"), which it applies
 * whatever securityChecks says: itself, the site config and runc, root's and
 * not writable by others, with every directory above them.
 */
export function helperTrustProblems(loaded: TrustedPaths): SecurityProblem[] {
  const trust = trustIn(loaded.layout.prefix);
  const { helper, runc } = loaded.paths;
  return [helper, loaded.file, runc].flatMap((p) => p === undefined ? [] : pathProblems(p, trust));
}

/** Problems with `path` by the rule, for a directory the helper trusts outside the installation. */
export function rootOnlyProblems(path: string): SecurityProblem[] {
  return pathProblems(path, trustIn(path));
}

/** What an installation trusts and whether it checks it, as loaded. */
export type CheckedInstall = TrustedPaths & { config: Pick<SiteConfig, "securityChecks"> };

/**
 * What stops every command of this installation for `user` (loadConfig
 * throws the first): the checks of installationProblems where the config
 * keeps them on; where it turns them off, the config itself must still be
 * safe from other users, or any of them could turn them off: owned (with
 * every directory above it) by root or by `user`, not writable by group or
 * others. This is what lets a home-directory install (`install.sh --user`)
 * run unchecked.
 */
export function trustProblems(loaded: CheckedInstall, user: Owner): SecurityProblem[] {
  if (loaded.config.securityChecks) return installationProblems(loaded);
  if (loaded.file === undefined) return [];
  return pathProblems(loaded.file, trustIn(loaded.layout.prefix, user));
}

/** A user install (`install.sh --user`): checks off, and a config of its own user's. */
export function isUserInstall(loaded: CheckedInstall): boolean {
  if (loaded.config.securityChecks || loaded.file === undefined) return false;
  try {
    return Deno.statSync(loaded.file).uid !== 0;
  } catch {
    return false;
  }
}

/** Throws the first of trustProblems as a SecurityError. */
export function checkTrust(loaded: CheckedInstall, user: Owner): void {
  const [first] = trustProblems(loaded, user);
  if (first) throw new SecurityError(first.message, { hint: first.hint });
}
