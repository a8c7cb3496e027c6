/**
 * The last site config and preferences validated, kept per user: a start
 * whose files hold exactly the texts validated last time takes the result
 * from here instead of building the zod schemas and validating again, a few
 * milliseconds of every `shoal run` (bench/startup.ts). The key is the texts
 * themselves, so an edit takes effect at once, and the build of shoal, so an
 * upgrade that changes the schema or its defaults does too.
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

export const CACHE_NAME = ".config-cache.json";

/** The cached result for exactly these inputs, or undefined. */
export function readCache(
  dir: string,
  uid: number,
  inputs: ConfigInputs,
): ValidatedConfig | undefined {
  const file = join(dir, CACHE_NAME);
  try {
    if (
      !privateTo(Deno.statSync(dir), uid, true) || !privateTo(Deno.lstatSync(file), uid, false)
    ) {
      return undefined;
    }
    const record = JSON.parse(Deno.readTextFileSync(file)) as CacheRecord;
    const same = record.inputs.build === inputs.build &&
      record.inputs.siteFile === inputs.siteFile &&
      record.inputs.siteText === inputs.siteText &&
      record.inputs.prefsFile === inputs.prefsFile &&
      record.inputs.prefsText === inputs.prefsText;
    return same ? record.validated : undefined;
  } catch {
    return undefined; // no cache yet, or a damaged one: validate
  }
}

/**
 * Keeps the result for the next start (replacing the file in one rename, as
 * many processes of one user start at once). Best effort: a cache that cannot
 * be written only costs the next start the validation.
 */
export function writeCache(
  dir: string,
  uid: number,
  inputs: ConfigInputs,
  validated: ValidatedConfig,
): void {
  const record: CacheRecord = { inputs, validated };
  const tmp = join(dir, `${CACHE_NAME}.${Deno.pid}.${crypto.randomUUID().slice(0, 8)}`);
  try {
    Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
    if (!privateTo(Deno.statSync(dir), uid, true)) return;
    Deno.writeTextFileSync(tmp, JSON.stringify(record), { mode: 0o600, createNew: true });
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
