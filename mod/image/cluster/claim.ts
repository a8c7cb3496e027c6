/**
 * Converting an image once per cluster, on a shared filesystem that gives no
 * working locks (NFS, Lustre without flock): a publisher claims a digest by
 * creating its claim directory (mkdir is atomic there), keeps it alive by
 * touching it, and ends it by committing or by removing it. Others wait for
 * the image to appear, and take over a claim nobody has touched for
 * `staleMs` (its publisher died or hangs) by renaming it into the trash
 * first: of several that try, one rename succeeds.
 *
 * A publisher that was taken over cannot spoil its successor's work: its work
 * directory has a random name inside the claim that the successor's claim
 * does not have, so its later writes and its commit fail.
 */
import { exists } from "../../sys/fs.ts";
import { join } from "../../path.ts";
import { randomHex } from "../../bytes.ts";
import { ShoalError } from "../../errors.ts";
import { claimDir, type ClusterPaths, imageDir } from "./layout.ts";

export interface ClaimOptions {
  /** A claim untouched this long is taken over. */
  staleMs: number;
  /** How often the holder touches its claim (well under staleMs). */
  heartbeatMs: number;
  /** How long to wait for another publisher before giving up. */
  timeoutMs: number;
  /** Called once, when another publisher holds the claim, with what its owner file says. */
  onWait?: (holder: string) => void;
}

export interface Claim {
  /** The directory to build the image in; `commit` renames it into place. */
  work: string;
  /** Renames the work directory into place; false when another publisher's image got there first. */
  commit(): Promise<boolean>;
  /** Ends the claim (after a commit, or to give up); removes what is left of it. */
  release(): Promise<void>;
}

const OWNER = "owner";

function mtimeMs(path: string): number | undefined {
  try {
    return Deno.statSync(path).mtime?.getTime();
  } catch {
    return undefined;
  }
}

/** Moves `path` into the trash and removes it there; false when it was already gone. */
export async function trashAndRemove(paths: ClusterPaths, path: string): Promise<boolean> {
  const trashed = join(paths.trash, `${randomHex(8)}`);
  try {
    await Deno.rename(path, trashed);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
  await Deno.remove(trashed, { recursive: true }).catch(() => {});
  return true;
}

/**
 * Claims `digest`: "exists" when the image is there (now or once another
 * publisher finishes), else a claim this process holds.
 */
export async function claimImage(
  paths: ClusterPaths,
  digest: string,
  owner: string,
  options: ClaimOptions,
): Promise<Claim | "exists"> {
  const dir = claimDir(paths, digest);
  const target = imageDir(paths, digest);
  const deadline = Date.now() + options.timeoutMs;
  let delay = 20;
  let told = false;
  for (;;) {
    if (exists(target)) return "exists";
    try {
      Deno.mkdirSync(dir, { mode: 0o755 });
      return held(paths, dir, target, owner, options);
    } catch (err) {
      if (!(err instanceof Deno.errors.AlreadyExists)) throw err;
    }
    const touched = mtimeMs(dir);
    if (touched !== undefined && Date.now() - touched > options.staleMs) {
      await trashAndRemove(paths, dir);
      continue;
    }
    if (!told) {
      told = true;
      options.onWait?.(ownerLine(dir) || "another publisher");
    }
    if (Date.now() > deadline) {
      throw new ShoalError(
        `another publisher has been converting ${digest} for over ${
          Math.round(options.timeoutMs / 1000)
        } s`,
        { hint: "try again later; a claim nobody keeps alive is taken over by the next publisher" },
      );
    }
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 1000);
  }
}

function ownerLine(dir: string): string {
  try {
    return Deno.readTextFileSync(join(dir, OWNER)).trim();
  } catch {
    return "";
  }
}

function held(
  paths: ClusterPaths,
  dir: string,
  target: string,
  owner: string,
  options: ClaimOptions,
): Claim {
  const token = randomHex(8);
  const line = `${owner} (claim ${token})`;
  Deno.writeTextFileSync(join(dir, OWNER), `${line}\n`, { mode: 0o644 });
  const work = join(dir, `work-${token}`);
  Deno.mkdirSync(work, { mode: 0o755 });
  const beat = setInterval(() => {
    const now = new Date();
    try {
      Deno.utimeSync(dir, now, now);
    } catch { /* taken over: the commit will fail */ }
  }, options.heartbeatMs);
  let ended = false;
  const end = () => {
    if (!ended) clearInterval(beat);
    ended = true;
  };
  return {
    work,
    commit: async () => {
      Deno.mkdirSync(join(target, ".."), { recursive: true, mode: 0o755 });
      try {
        await Deno.rename(work, target);
        return true;
      } catch (err) {
        // Another publisher committed first (a taken-over claim): theirs stands.
        if (exists(target)) return false;
        throw err;
      } finally {
        end();
      }
    },
    release: async () => {
      end();
      // Only our own claim: one taken over is gone, or is a successor's now.
      if (ownerLine(dir) === line) await trashAndRemove(paths, dir);
    },
  };
}
