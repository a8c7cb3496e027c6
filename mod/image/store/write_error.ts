/**
 * Failures of this machine's storage while writing (full disk, quota,
 * read-only filesystem, permissions, I/O error): one line naming the
 * filesystem and the file. They are never retried and a resume cannot fix
 * them, unlike a dropped connection.
 */
import { dirname } from "../../path.ts";
import { ShoalError } from "../../errors.ts";

export class LocalWriteError extends ShoalError {
  constructor(message: string, readonly code: string, options: { hint?: string; cause?: unknown }) {
    super(message, options);
  }
}

const FREE_SPACE = "free space: `shoal system df` shows what the repository holds, " +
  "`shoal system prune` and `shoal rmi` free it; or ask for more quota";

/**
 * `err` as a LocalWriteError when it is one of the storage failures above
 * (by errno code), `err` unchanged otherwise. `path` is the file written.
 */
export function localWriteError(err: unknown, path: string): unknown {
  if (err instanceof ShoalError) return err;
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== "string") return err;
  const on = () => filesystemOf(path);
  const make = (message: string, hint?: string) =>
    new LocalWriteError(message, code, { hint, cause: err });
  switch (code) {
    case "ENOSPC":
      return make(`no space left on ${on()} while writing ${path}`, FREE_SPACE);
    case "EDQUOT":
      return make(`disk quota exceeded on ${on()} while writing ${path}`, FREE_SPACE);
    case "EFBIG":
      return make(`file too large for ${on()} while writing ${path}`);
    case "EROFS":
      return make(
        `${on()} is read-only: cannot write ${path}`,
        "use a repository on a writable filesystem",
      );
    case "EACCES":
    case "EPERM":
      return make(
        `permission denied writing ${path}`,
        "check the owner and permissions of the repository",
      );
    case "EIO":
      return make(
        `I/O error on ${on()} while writing ${path}`,
        "the filesystem or its disk is failing",
      );
    default:
      return err;
  }
}

/** "SOURCE (mounted on DIR)" for the mount that holds `path`, from /proc/self/mountinfo. */
export function filesystemOf(path: string): string {
  let text: string;
  try {
    text = Deno.readTextFileSync("/proc/self/mountinfo");
  } catch {
    return "the device";
  }
  const dir = existingDir(path);
  let best: { point: string; source: string } | undefined;
  for (const line of text.split("\n")) {
    // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS
    const fields = line.split(" ");
    const dash = fields.indexOf("-");
    const point = unescape(fields[4] ?? "");
    if (dash < 0 || !within(dir, point)) continue;
    if (best === undefined || point.length >= best.point.length) {
      best = { point, source: unescape(fields[dash + 2] ?? "?") };
    }
  }
  return best === undefined ? "the device" : `${best.source} (mounted on ${best.point})`;
}

function within(path: string, mountPoint: string): boolean {
  return mountPoint === "/" || path === mountPoint || path.startsWith(mountPoint + "/");
}

/** mountinfo writes space, tab, newline and backslash as octal escapes. */
function unescape(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct) => String.fromCharCode(parseInt(oct, 8)));
}

/** `path`, or its nearest ancestor that exists, with symlinks resolved. */
function existingDir(path: string): string {
  for (let p = path;; p = dirname(p)) {
    try {
      return Deno.realPathSync(p);
    } catch {
      if (p === "/" || p === ".") return "/";
    }
  }
}
