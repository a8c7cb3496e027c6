/**
 * Where an installation keeps its files, derived from the running program
 * alone. An environment variable or the current directory could point an
 * unprivileged user's shoal at a config of their choosing, so neither is
 * consulted; the source tree is used only when shoal runs from a checkout.
 */
import { basename, dirname, join } from "../path.ts";
import { ConfigError } from "../errors.ts";

export interface InstallLayout {
  /**
   * `compiled`: `<prefix>/bin/shoal` built by `deno compile`; `bundle`:
   * `<prefix>/lib/shoal/shoal.js` (or `shoal-run.js`, `shoal run`'s own) run
   * by `<prefix>/lib/shoal/deno` through the launcher `<prefix>/bin/shoal`;
   * `checkout`: main.ts (or main_run.ts) at the root of a clone.
   */
  kind: "compiled" | "bundle" | "checkout";
  prefix: string;
  /** The site config, `<prefix>/etc/shoal.json`. */
  configFile: string;
  /** The setuid mount helper, `<prefix>/libexec/shoal/shoal-mount`. */
  helper: string;
  /** The exec shim for commands that are not UTF-8, `<prefix>/libexec/shoal/shoal-exec`. */
  execShim: string;
  /** How a step's ranks enter its container, `<prefix>/libexec/shoal/shoal-enter` (enter.c). */
  enterShim: string;
  /** OCI hook definitions, `<prefix>/etc/hooks.d`. */
  hooksDir: string;
  /**
   * Path B's guard script, `<prefix>/libexec/shoal/shoal-guard`; in a checkout
   * the source, mod/runtime/shoal-guard.sh: a checkout has no libexec/, whose
   * chain the security checks would refuse in a home directory or /tmp.
   */
  guardScript: string;
}

/** The bundle's two entries (install.sh): the whole program's and `shoal run`'s. */
const BUNDLE_ENTRIES = ["/lib/shoal/shoal.js", "/lib/shoal/shoal-run.js"];

export function installLayout(
  execPath: string = Deno.execPath(),
  mainModule: string = Deno.mainModule,
): InstallLayout {
  // A compiled binary is the only layout whose executable is not Deno itself.
  if (basename(execPath) !== "deno") {
    return layoutAt("compiled", dirname(dirname(execPath)));
  }
  const main = localPath(mainModule);
  if (main === undefined) {
    throw new ConfigError(`cannot tell where shoal is installed: it runs from ${mainModule}`, {
      hint: "run shoal from an installation or a checkout",
    });
  }
  const entry = BUNDLE_ENTRIES.find((suffix) => main.endsWith(suffix));
  if (entry !== undefined) return layoutAt("bundle", main.slice(0, -entry.length) || "/");
  return layoutAt("checkout", checkoutRoot(main));
}

/** A `file:` URL's path on this host, as node:url's fileURLToPath gives it. */
function localPath(url: string): string | undefined {
  if (!url.startsWith("file:")) return undefined;
  const { hostname, pathname } = new URL(url);
  // Another host's file, or an encoded slash that would make one path component two.
  if (hostname !== "" || /%2f/i.test(pathname)) return undefined;
  return decodeURIComponent(pathname);
}

function layoutAt(kind: InstallLayout["kind"], prefix: string): InstallLayout {
  return {
    kind,
    prefix,
    configFile: join(prefix, "etc", "shoal.json"),
    helper: join(prefix, "libexec", "shoal", "shoal-mount"),
    execShim: join(prefix, "libexec", "shoal", "shoal-exec"),
    enterShim: join(prefix, "libexec", "shoal", "shoal-enter"),
    hooksDir: join(prefix, "etc", "hooks.d"),
    guardScript: kind === "checkout"
      ? join(prefix, "mod", "runtime", "shoal-guard.sh")
      : join(prefix, "libexec", "shoal", "shoal-guard"),
  };
}

/**
 * The nearest directory above `main` holding main.ts and deno.json: main.ts
 * itself when shoal runs, a test file's checkout under `deno test`.
 */
function checkoutRoot(main: string): string {
  for (let dir = dirname(main);; dir = dirname(dir)) {
    if (isFile(join(dir, "main.ts")) && isFile(join(dir, "deno.json"))) return dir;
    if (dir === "/") break;
  }
  throw new ConfigError(`cannot tell where shoal is installed: no checkout contains ${main}`, {
    hint: "run shoal from an installation or a checkout",
  });
}

function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}
