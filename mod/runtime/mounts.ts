/**
 * User bind mounts: `--mount` (Sarus/Docker syntax) and `-v` (Docker
 * shorthand), checked and resolved before anything is mounted, and the
 * resolution of container paths inside a mounted rootfs.
 */
import { join, normalize, resolve } from "../path.ts";
import { UsageError } from "../errors.ts";
import { statfs } from "../sys/fs.ts";
import { hasRawBytes } from "../bytes.ts";
import { Errno, ErrnoError } from "../sys/libc.ts";
import { realPathRaw } from "../sys/raw_path.ts";

/** A bind mount as the user asked for it (paths not yet resolved). */
export interface MountRequest {
  source: string;
  destination: string;
  readonly: boolean;
  /** How the user wrote it, for error messages. */
  option: string;
}

/** A checked bind mount: `source` is the host's real path, `destination` normalized. */
export interface BindMount {
  source: string;
  destination: string;
  readonly: boolean;
}

const SOURCE_KEYS = ["source", "src"];
const DESTINATION_KEYS = ["destination", "dst", "target"];
const READONLY_KEYS = ["readonly", "ro"];
const KEYS = "type, source|src, destination|dst|target, readonly|ro";

/**
 * Container paths no user mount may cover, or lie under: the container's own
 * /proc, /sys, /dev/pts and /dev/mqueue, and the host's /dev/shm (a mount point
 * made under it would appear on the host).
 */
export const BUILTIN_FORBIDDEN_UNDER = ["/proc", "/sys", "/dev/pts", "/dev/mqueue", "/dev/shm"];
/** Container paths no user mount may replace as a whole (mounts below them are fine). */
export const BUILTIN_FORBIDDEN_EXACT = ["/", "/dev"];

/** Parses `--mount=type=bind,source=ABS,destination=ABS[,readonly]`. */
export function parseMountOption(spec: string): MountRequest {
  const option = `--mount=${spec}`;
  const fields = new Map<string, string | undefined>();
  for (const part of spec.split(",")) {
    if (part === "") continue;
    const eq = part.indexOf("=");
    const key = (eq < 0 ? part : part.slice(0, eq)).trim().toLowerCase();
    const value = eq < 0 ? undefined : part.slice(eq + 1);
    if (
      key !== "type" && !SOURCE_KEYS.includes(key) && !DESTINATION_KEYS.includes(key) &&
      !READONLY_KEYS.includes(key)
    ) {
      throw new UsageError(`${option}: unknown key '${key}' (keys: ${KEYS})`);
    }
    const canonical = SOURCE_KEYS.includes(key)
      ? "source"
      : DESTINATION_KEYS.includes(key)
      ? "destination"
      : READONLY_KEYS.includes(key)
      ? "readonly"
      : key;
    if (fields.has(canonical)) throw new UsageError(`${option}: '${canonical}' given twice`);
    fields.set(canonical, value);
  }
  if (!fields.has("type")) {
    throw new UsageError(
      `${option}: 'type' is required (--mount=type=bind,source=/host/path,destination=/container/path)`,
    );
  }
  const type = fields.get("type");
  if (type !== "bind") {
    throw new UsageError(
      `${option}: unsupported type '${type ?? ""}' (only type=bind is supported)`,
    );
  }
  const source = fields.get("source");
  const destination = fields.get("destination");
  if (source === undefined || source === "") {
    throw new UsageError(`${option}: 'source' is required`);
  }
  if (destination === undefined || destination === "") {
    throw new UsageError(`${option}: 'destination' is required`);
  }
  return { source, destination, readonly: readonlyValue(option, fields), option };
}

function readonlyValue(option: string, fields: Map<string, string | undefined>): boolean {
  if (!fields.has("readonly")) return false;
  const value = fields.get("readonly");
  if (value === undefined || value === "true" || value === "1") return true;
  if (value === "false" || value === "0") return false;
  throw new UsageError(`${option}: readonly takes true or false, not '${value}'`);
}

/** Parses Docker's `-v SRC:DST[:ro|rw]` (bind mounts only: no named volumes). */
export function parseVolumeOption(spec: string): MountRequest {
  const option = `-v ${spec}`;
  const parts = spec.split(":");
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => p === "")) {
    throw new UsageError(`${option}: expected SOURCE:DESTINATION[:ro|rw]`);
  }
  const [source, destination, mode] = parts as [string, string, string | undefined];
  if (!source.startsWith("/")) {
    throw new UsageError(
      `${option}: source must be an absolute host path (named volumes are not supported)`,
    );
  }
  let readonly = false;
  for (const flag of mode === undefined ? [] : mode.split(",")) {
    if (flag === "ro") readonly = true;
    else if (flag === "rw") readonly = false;
    else throw new UsageError(`${option}: unknown option '${flag}' (ro or rw)`);
  }
  return { source, destination, readonly, option };
}

/**
 * The normalized container path `dest`, or a UsageError: it must be absolute
 * and free of `..` (a mount target is resolved inside the rootfs, and `..`
 * there says something other than what it looks like).
 */
export function checkDestination(option: string, dest: string): string {
  if (hasRawBytes(dest)) {
    // runc resolves it in the rootfs from config.json, where Go's JSON replaces such bytes.
    throw new UsageError(
      `${option}: destination '${dest}' is not valid UTF-8, which runc cannot mount on (choose a UTF-8 container path)`,
    );
  }
  if (!dest.startsWith("/")) {
    throw new UsageError(`${option}: destination '${dest}' must be an absolute path`);
  }
  if (dest.split("/").includes("..")) {
    throw new UsageError(`${option}: destination '${dest}' must not contain '..'`);
  }
  const normal = normalize(dest);
  return normal.length > 1 ? normal.replace(/\/$/, "") : normal;
}

function isUnder(path: string, base: string): boolean {
  return path === base || path.startsWith(base === "/" ? "/" : `${base}/`);
}

/** Throws when `dest` (normalized) is a forbidden destination. */
export function checkAllowedDestination(option: string, dest: string, siteForbidden: string[]) {
  const bases = [...BUILTIN_FORBIDDEN_UNDER, ...siteForbidden].map((p) => {
    const n = normalize(p);
    return n.length > 1 ? n.replace(/\/$/, "") : n;
  });
  const under = bases.find((base) => isUnder(dest, base));
  if (under !== undefined) {
    throw new UsageError(`${option}: mounting on ${dest} is not allowed (${under} is protected)`);
  }
  if (BUILTIN_FORBIDDEN_EXACT.includes(dest)) {
    throw new UsageError(`${option}: mounting on ${dest} itself is not allowed`);
  }
}

/**
 * Checks user mount requests and resolves their sources as the calling user
 * (realpath: the source must exist and be reachable by them). Destinations must
 * be absolute, `..`-free, unique, not forbidden (built-in or `siteForbidden`),
 * and not among `taken` (destination -> what mounts there, e.g. site mounts).
 * Sync realpath (each async call costs ~0.5 ms of a run's start, bench/startup.ts);
 * async for callers that hold the result as a promise.
 */
// deno-lint-ignore require-await
export async function resolveMounts(
  requests: MountRequest[],
  siteForbidden: string[],
  taken: ReadonlyMap<string, string> = new Map(),
): Promise<BindMount[]> {
  const seen = new Map<string, string>(taken);
  const out: BindMount[] = [];
  for (const req of requests) {
    if (!req.source.startsWith("/")) {
      throw new UsageError(`${req.option}: source '${req.source}' must be an absolute path`);
    }
    const destination = checkDestination(req.option, req.destination);
    checkAllowedDestination(req.option, destination, siteForbidden);
    const earlier = seen.get(destination);
    if (earlier !== undefined) {
      throw new UsageError(
        `${req.option}: ${destination} is already the destination of ${earlier}`,
      );
    }
    seen.set(destination, req.option);
    out.push({ source: realSource(req), destination, readonly: req.readonly });
  }
  return out;
}

/** Deno's realPath would replace bytes that are not UTF-8: such a source goes to libc's. */
function realSource(req: MountRequest): string {
  try {
    return hasRawBytes(req.source) ? realPathRaw(req.source) : Deno.realPathSync(req.source);
  } catch (err) {
    const code = err instanceof ErrnoError ? err.errno : undefined;
    if (err instanceof Deno.errors.NotFound || code === Errno.ENOENT) {
      throw new UsageError(`${req.option}: source ${req.source} does not exist`);
    }
    if (err instanceof Deno.errors.PermissionDenied || code === Errno.EACCES) {
      throw new UsageError(`${req.option}: source ${req.source} is not accessible to you`);
    }
    throw err;
  }
}

/** How many symlinks one resolution may follow (Linux stops at 40; securejoin at 255). */
export const MAX_SYMLINKS = 255;

/**
 * The host path of container path `dest` inside the mounted `rootfs`, resolved
 * component by component with every symlink interpreted as the container sees
 * it: absolute targets start again at the rootfs, and `..` never climbs above
 * it (as filepath-securejoin does). Components that do not exist are appended
 * as they are, so the result can be created. Throws on a symlink loop.
 * Another process changing the tree concurrently can still race this; it is
 * meant for trees only the calling user's container writes to.
 */
export function resolveInRoot(rootfs: string, dest: string): string {
  const root = resolve(rootfs);
  let pending = dest.split("/").filter((c) => c !== "" && c !== ".");
  const resolved: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const [part, ...rest] = pending as [string, ...string[]];
    pending = rest;
    if (part === "..") {
      resolved.pop();
      continue;
    }
    const host = join(root, ...resolved, part);
    let info: Deno.FileInfo | undefined;
    try {
      info = Deno.lstatSync(host);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound || err instanceof Deno.errors.NotADirectory)) {
        throw err;
      }
    }
    if (info === undefined || !info.isSymlink) {
      resolved.push(part);
      continue;
    }
    if (++links > MAX_SYMLINKS) {
      throw new UsageError(`too many levels of symbolic links resolving ${dest} in the container`);
    }
    const target = Deno.readLinkSync(host);
    if (target.startsWith("/")) resolved.length = 0;
    pending = [...target.split("/").filter((c) => c !== "" && c !== "."), ...pending];
  }
  return join(root, ...resolved);
}

/** statfs(2) f_flags bits a bind mount inherits in a user namespace, as mount options. */
const LOCKED_FLAGS: [number, string][] = [
  [0x1, "ro"],
  [0x2, "nosuid"],
  [0x4, "nodev"],
  [0x8, "noexec"],
  [0x400, "noatime"],
  [0x800, "nodiratime"],
];
const ST_NOATIME = 0x400;
const ST_RELATIME = 0x1000;

/** The flags of mounts already looked at, by mount id: a CDI spec binds dozens of one's files. */
const mountFlags = new Map<bigint, number>();

/**
 * `options` plus the flags of the mount holding `source` that a user namespace
 * locks (ro, nosuid, nodev, noexec, atime): the kernel refuses to clear them on
 * the remount runc does after binding, and runc 1.1 does not add them itself
 * (a `noexec` scratch filesystem would fail with "operation not permitted").
 * `mntId`: the mount `source` is on, where the caller has it (statPath).
 */
export function withLockedFlags(options: string[], source: string, mntId?: bigint): string[] {
  let flags = mntId === undefined ? undefined : mountFlags.get(mntId);
  if (flags === undefined) {
    flags = statfs(source).flags;
    if (mntId !== undefined) mountFlags.set(mntId, flags);
  }
  const out = [...options];
  const add = (o: string) => {
    if (!out.includes(o)) out.push(o);
  };
  for (const [bit, option] of LOCKED_FLAGS) if (flags & bit) add(option);
  if (!(flags & (ST_NOATIME | ST_RELATIME))) add("strictatime");
  return out;
}
