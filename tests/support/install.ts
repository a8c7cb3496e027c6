/**
 * shoal installed with install.sh, as a site admin would, for tests that run
 * the installed engine as root or as the unprivileged test user.
 */
import { repoRoot, type Result, runCommand, type RunOptions } from "./shoal.ts";

export const installScript = `${repoRoot}/install.sh`;

export interface Installation {
  prefix: string;
  /** `<prefix>/bin/shoal`. */
  bin: string;
}

/** Runs `install.sh ARGS...` from the checkout as the current user. */
export function runInstall(args: string[], options: RunOptions = {}): Promise<Result> {
  return runCommand(installScript, args, options);
}

/**
 * A new empty directory, mode 0755, whose every parent is root-owned and not
 * writable by group or others, as shoal's security checks require of an
 * installation (the temp dirs /tmp and /var/tmp are world-writable). The
 * caller removes it.
 */
export async function rootOwnedTempDir(): Promise<string> {
  const dir = await Deno.makeTempDir({ dir: "/var/lib", prefix: "shoal-test-" });
  await Deno.chmod(dir, 0o755);
  return dir;
}

let installation: Promise<Installation> | undefined;

/**
 * shoal installed once per test process by `install.sh --prefix` (as root,
 * the way it builds by default on this machine), removed when the process
 * ends. Every user can execute it.
 */
export function installedShoal(): Promise<Installation> {
  installation ??= install();
  return installation;
}

async function install(): Promise<Installation> {
  const dir = await rootOwnedTempDir();
  globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
  const prefix = `${dir}/shoal`;
  const r = await runInstall(["--prefix", prefix, "--no-bootstrap"]);
  if (r.code !== 0) throw new Error(`install.sh --prefix ${prefix} failed: ${r.stderr.trim()}`);
  return { prefix, bin: `${prefix}/bin/shoal` };
}
