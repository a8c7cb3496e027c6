/**
 * The last site config and preferences validated, kept per user: a start
 * whose files hold exactly the texts validated last time takes the result
 * from here instead of building the zod schemas and validating again, a few
 * milliseconds of every `shoal run` (bench/startup.ts). The key is the texts
 * themselves, so an edit takes effect at once, and the build of shoal, so an
 * upgrade that changes the schema or its defaults does too. One result is
 * kept per build: an installation has two, the whole program's bundle and
 * `shoal run`'s own (install.sh), and a user who runs both in turn must not
 * have each undo the other's.
 *
 * The cache lives in the user's own default run directory (node-local, mode
 * 0700, reached through its descriptor: runtime/rundir.ts), and is taken only
 * from a regular file there that the user owns and nobody else may write:
 * nobody else can put a config in front of the user. `dir` may be that
 * descriptor's /proc/self/fd path, so it is followed; the file is not. The user can, but only for their own runs, which they could run with
 * any config anyway; the helper reads and checks the site config itself.
 */
import { join } from "../path.ts";
import type { SiteConfig, UserPreferences } from "./schema.ts";

/** What was validated: the files' paths and texts (undefined: no such file). */
export interface ConfigInputs {
  /** The build of shoal that validated them (load.ts). */
  build: string;
  siteFile: string;
  siteText?: string;
  prefsFile?: string;
  prefsText?: string;
}

export interface ValidatedConfig {
  config: SiteConfig;
  preferences?: UserPreferences;
}

interface CacheRecord {
  inputs: ConfigInputs;
  validated: ValidatedConfig;
}

/** The cache file: the latest record of each build, the newest first. */
interface CacheFile {
  records: CacheRecord[];
}

export const CACHE_NAME = ".config-cache.json";
/** Builds whose results are kept: both bundles, and an upgrade's while its old runs end. */
const KEEP = 4;

/** The cached result for exactly these inputs, or undefined. */
export function readCache(
  dir: string,
  uid: number,
  inputs: ConfigInputs,
): ValidatedConfig | undefined {
  return cachedRecords(dir, uid).find((r) => sameInputs(r.inputs, inputs))?.validated;
}

function sameInputs(a: ConfigInputs, b: ConfigInputs): boolean {
  return a.build === b.build && a.siteFile === b.siteFile && a.siteText === b.siteText &&
    a.prefsFile === b.prefsFile && a.prefsText === b.prefsText;
}

/** The records of the cache file in `dir`, when the user alone could have written it. */
function cachedRecords(dir: string, uid: number): CacheRecord[] {
  const file = join(dir, CACHE_NAME);
  try {
    if (
      !privateTo(Deno.statSync(dir), uid, true) || !privateTo(Deno.lstatSync(file), uid, false)
    ) {
      return [];
    }
    const records = (JSON.parse(Deno.readTextFileSync(file)) as CacheFile).records;
    // A damaged record is only a miss.
    return Array.isArray(records)
      ? records.filter((r) => typeof r?.inputs === "object" && typeof r.validated === "object")
      : [];
  } catch {
    return []; // no cache yet, or a damaged one: validate
  }
}

/**
 * Keeps the result for the next start, in place of this build's last one
 * (replacing the file in one rename, as many processes of one user start at
 * once). Best effort: a cache that cannot be written only costs the next
 * start the validation.
 */
export function writeCache(
  dir: string,
  uid: number,
  inputs: ConfigInputs,
  validated: ValidatedConfig,
): void {
  const others = cachedRecords(dir, uid).filter((r) => r.inputs.build !== inputs.build);
  const file: CacheFile = { records: [{ inputs, validated }, ...others].slice(0, KEEP) };
  const tmp = join(dir, `${CACHE_NAME}.${Deno.pid}.${crypto.randomUUID().slice(0, 8)}`);
  try {
    Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
    if (!privateTo(Deno.statSync(dir), uid, true)) return;
    Deno.writeTextFileSync(tmp, JSON.stringify(file), { mode: 0o600, createNew: true });
    Deno.renameSync(tmp, join(dir, CACHE_NAME));
  } catch {
    try {
      Deno.removeSync(tmp);
    } catch { /* never created */ }
  }
}

/** Owned by `uid`, writable by nobody else, and of the expected kind (not a symlink). */
function privateTo(info: Deno.FileInfo, uid: number, directory: boolean): boolean {
  const kindOk = directory ? info.isDirectory : info.isFile;
  return kindOk && info.uid === uid && ((info.mode ?? 0o777) & 0o022) === 0;
}
