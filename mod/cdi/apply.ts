/**
 * Applies the containerEdits of CDI devices to a rootless container's
 * config.json: the spec file's own edits once, before its first device's,
 * then each device's, in the order the devices were asked for.
 *
 * A device node cannot be created in a user namespace, so each is
 * bind-mounted from the host (as `--device /dev/x` is, runtime/devices.ts);
 * a type, major or minor the spec gives must match the host's node, since a
 * mismatch means the spec no longer describes this node. intelRdt needs the
 * host's resctrl filesystem, which only root may write, so it is not applied.
 */
import { ConfigError, SecurityError } from "../errors.ts";
import { statPath } from "../sys/dirfd.ts";
import { Errno, ErrnoError } from "../sys/libc.ts";
import { rootOnlyProblems } from "../config/security.ts";
import { deviceMount, resolveDevice } from "../runtime/devices.ts";
import { withLockedFlags } from "../runtime/mounts.ts";
import type { OciMount, OciSpec } from "../runtime/oci.ts";
import type { IdMapping } from "../runtime/idmap.ts";
import type { CdiDeviceNode, CdiEdits } from "./spec.ts";
import { readDevices, type ResolvedDevice, selectDevices } from "./registry.ts";

export interface CdiContext {
  /** The spec dirs, in order (later wins). */
  dirs: string[];
  /** Whether spec files and hook programs must pass the installation's security checks. */
  checked: boolean;
  /** The container's gid map: an additional group is given only where mapped. */
  gidMappings: IdMapping[];
}

/** Where an edit comes from, for messages. */
interface Origin {
  device: string;
  file: string;
}

function replaceMount(spec: OciSpec, mount: OciMount): void {
  spec.mounts = spec.mounts.filter((m) => m.destination !== mount.destination);
  spec.mounts.push(mount);
}

/** Sets a NAME=VALUE entry of the container's environment, replacing one of the same name. */
export function setEnv(spec: OciSpec, entry: string): void {
  const name = entry.slice(0, entry.indexOf("=") + 1);
  spec.process.env = spec.process.env.filter((e) => !e.startsWith(name));
  spec.process.env.push(entry);
}

function nodeType(info: Deno.FileInfo): string {
  if (info.isCharDevice) return "c";
  if (info.isBlockDevice) return "b";
  return info.isFifo ? "p" : "?";
}

/** Linux's dev_t encoding (glibc's gnu_dev_major/minor); exact below 2^53. */
function majorMinor(rdev: number): [number, number] {
  const hi = Math.floor(rdev / 2 ** 32);
  const lo = rdev >>> 0;
  return [((lo >>> 8) & 0xfff) | ((hi & ~0xfff) >>> 0), (lo & 0xff) | ((lo >>> 12) & ~0xff)];
}

function deviceNode(spec: OciSpec, node: CdiDeviceNode, from: Origin): void {
  const option = `--device ${from.device} (${from.file})`;
  const mount = resolveDevice({
    hostPath: node.hostPath ?? node.path,
    containerPath: node.path,
    access: "rwm",
    option,
  })!;
  const info = Deno.statSync(mount.source);
  const type = nodeType(info);
  const [major, minor] = majorMinor(info.rdev ?? 0);
  const wanted = node.type === "u" ? "c" : node.type;
  const mismatch = (wanted !== undefined && wanted !== type && `type ${node.type}`) ||
    (node.major !== undefined && node.major !== major && `major ${node.major}`) ||
    (node.minor !== undefined && node.minor !== minor && `minor ${node.minor}`);
  if (mismatch) {
    throw new ConfigError(
      `${option}: the spec gives ${node.path} ${mismatch}, the node ${mount.source} is ${type} ${major}:${minor}`,
      { hint: "regenerate the CDI spec for this node (ask your admin)" },
    );
  }
  replaceMount(spec, deviceMount(mount));
}

function mount(spec: OciSpec, m: NonNullable<CdiEdits["mounts"]>[number], from: Origin): void {
  let options = m.options ?? [];
  // A bind mount's type is often a dummy such as "none" (the CDI spec).
  const bind = m.type === undefined || m.type === "bind" || options.includes("bind") ||
    options.includes("rbind");
  const type = bind ? "bind" : m.type!;
  if (bind) {
    let mntId: bigint | undefined;
    try {
      mntId = statPath(m.hostPath).mntId;
    } catch (err) {
      const why = err instanceof ErrnoError && err.errno === Errno.ENOENT
        ? "does not exist"
        : (err as Error).message;
      throw new ConfigError(
        `--device ${from.device} (${from.file}): mount source ${m.hostPath} ${why}`,
        {
          hint: "regenerate the CDI spec for this node (ask your admin)",
        },
      );
    }
    if (!options.includes("bind") && !options.includes("rbind")) options = ["rbind", ...options];
    options = withLockedFlags(options, m.hostPath, mntId);
  }
  replaceMount(spec, { destination: m.containerPath, type, source: m.hostPath, options });
}

function hook(
  spec: OciSpec,
  h: NonNullable<CdiEdits["hooks"]>[number],
  checked: boolean,
  from: Origin,
) {
  const where = `--device ${from.device} (${from.file})`;
  let program: Deno.FileInfo | undefined;
  try {
    program = Deno.statSync(h.path);
  } catch {
    program = undefined;
  }
  if (!program?.isFile) {
    throw new ConfigError(`${where}: hook program ${h.path} is not a file on this node`, {
      hint: "install it, or regenerate the CDI spec (ask your admin)",
    });
  }
  const [unsafe] = checked ? rootOnlyProblems(h.path) : [];
  if (unsafe) throw new SecurityError(`${where}: hook ${unsafe.message}`, { hint: unsafe.hint });
  const { hookName, ...entry } = h;
  ((spec.hooks ??= {})[hookName] ??= []).push(entry);
}

function applyEdits(
  spec: OciSpec,
  edits: CdiEdits | undefined,
  ctx: CdiContext,
  from: Origin,
  warnings: string[],
): void {
  if (edits === undefined) return;
  for (const e of edits.env ?? []) setEnv(spec, e);
  for (const n of edits.deviceNodes ?? []) deviceNode(spec, n, from);
  for (const m of edits.mounts ?? []) mount(spec, m, from);
  for (const h of edits.hooks ?? []) hook(spec, h, ctx.checked, from);
  for (const n of edits.netDevices ?? []) {
    warnings.push(
      `CDI device ${from.device}: network interface ${n.hostInterfaceName} not moved in (the container shares the host's network, where it is visible as is)`,
    );
  }
  if (edits.intelRdt !== undefined) {
    warnings.push(
      `CDI device ${from.device}: intelRdt not applied (a rootless container cannot set it)`,
    );
  }
  // Group 0 is ignored, as the CDI spec says.
  for (const gid of (edits.additionalGids ?? []).filter((g) => g !== 0)) {
    const mapped = ctx.gidMappings.some((m) =>
      gid >= m.containerID && gid < m.containerID + m.size
    );
    if (!mapped) {
      warnings.push(
        `CDI device ${from.device}: group ${gid} is not mapped into the container, so it is not added`,
      );
      continue;
    }
    const groups = (spec.process.user.additionalGids ??= []);
    if (!groups.includes(gid)) groups.push(gid);
  }
}

/**
 * Resolves the `--device vendor/class=name` options and applies their edits
 * to `spec`; `known`: the spec dirs' devices where the caller read them already.
 */
export async function applyCdiDevices(
  spec: OciSpec,
  requested: string[],
  ctx: CdiContext,
  warnings: string[],
  known?: Map<string, ResolvedDevice>,
): Promise<ResolvedDevice[]> {
  known ??= await readDevices(ctx.dirs, ctx.checked);
  const devices = selectDevices(known, requested, ctx.dirs);
  const applied = new Set<string>();
  for (const d of devices) {
    const from = { device: d.qualified, file: d.file.path };
    if (!applied.has(d.file.path)) {
      applied.add(d.file.path);
      applyEdits(spec, d.file.spec.containerEdits, ctx, from, warnings);
    }
    applyEdits(spec, d.device.containerEdits, ctx, from, warnings);
  }
  return devices;
}
