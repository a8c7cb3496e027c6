/**
 * Host devices in the container: `--device HOST[:CTR][:rwm]` and the site's
 * devices.
 *
 * In a user namespace a device node cannot be created (mknod needs
 * CAP_MKNOD in the initial namespace), so each device is bind-mounted from the
 * host onto its container path. No OCI `linux.devices` entry is written for
 * it: runc, in a user namespace, bind-mounts such an entry from the host path
 * equal to the *container* path, which is wrong for HOST:CTR and a duplicate
 * otherwise. No `resources.devices` rule is written either: a rootless
 * container has no device cgroup of its own (cgroup v1 cannot be delegated),
 * so the access letters are checked for syntax only and the host's
 * permissions on the node decide what the user can do, exactly as outside.
 */
import { normalize } from "../path.ts";
import { UsageError } from "../errors.ts";
import { checkDestination } from "./mounts.ts";
import type { OciMount } from "./oci.ts";
import { looksQualified, parseQualifiedName } from "../cdi/name.ts";

export interface DeviceRequest {
  hostPath: string;
  containerPath: string;
  /** Some of r (read), w (write), m (mknod), as Docker takes them. */
  access: string;
  /** How it was given, for messages. */
  option: string;
}

/** `--device vendor.com/class=name`: a device of the node's CDI specs (mod/cdi/). */
export interface CdiDeviceRequest {
  cdi: string;
  option: string;
}

const ACCESS = /^(?!.*(.).*\1)[rwm]{1,3}$/;

/** Tells `--device vendor.com/class=name` (CDI) from Docker's `HOST[:CTR][:rwm]`. */
export function parseDeviceArgument(spec: string): DeviceRequest | CdiDeviceRequest {
  if (!looksQualified(spec)) return parseDeviceOption(spec);
  try {
    parseQualifiedName(spec);
  } catch (err) {
    throw new UsageError(`--device ${spec}: ${(err as Error).message}`, {
      hint: "a CDI device is named vendor.com/class=name (or =all)",
    });
  }
  return { cdi: spec, option: `--device ${spec}` };
}

/** Parses Docker's `HOST[:CTR][:rwm]`; a lone second field is access when it looks like one. */
export function parseDeviceOption(spec: string): DeviceRequest {
  const option = `--device ${spec}`;
  const parts = spec.split(":");
  let host: string | undefined;
  let ctr: string | undefined;
  let access = "rwm";
  if (parts.length === 1) [host] = parts;
  else if (parts.length === 2 && ACCESS.test(parts[1]!)) [host, access] = parts as [string, string];
  else if (parts.length === 2) [host, ctr] = parts;
  else if (parts.length === 3) [host, ctr, access] = parts as [string, string, string];
  else throw new UsageError(`${option}: expected HOST[:CONTAINER][:rwm]`);
  if (host === undefined || !host.startsWith("/")) {
    throw new UsageError(`${option}: the host device must be an absolute path`);
  }
  if (!ACCESS.test(access)) {
    throw new UsageError(`${option}: access '${access}' must be a combination of r, w and m`);
  }
  const containerPath = checkDestination(option, ctr ?? host);
  return { hostPath: host, containerPath, access, option };
}

export interface DeviceMount {
  source: string;
  destination: string;
}

/**
 * The bind mount for a device, or null when the host has no such path and
 * `optional` (site devices differ between nodes). The host path may be a
 * symlink (as /dev/disk/by-id entries are); the node it names is mounted.
 */
export function resolveDevice(req: DeviceRequest, optional = false): DeviceMount | null {
  let info: Deno.FileInfo;
  let source: string;
  try {
    source = Deno.realPathSync(req.hostPath);
    info = Deno.statSync(source);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      if (optional) return null;
      throw new UsageError(`${req.option}: ${req.hostPath} does not exist`);
    }
    if (err instanceof Deno.errors.PermissionDenied) {
      throw new UsageError(`${req.option}: ${req.hostPath} is not accessible to you`);
    }
    throw err;
  }
  if (!info.isCharDevice && !info.isBlockDevice) {
    throw new UsageError(`${req.option}: ${req.hostPath} is not a device (use --mount for files)`);
  }
  return { source, destination: normalize(req.containerPath) };
}

/** Devices are bind-mounted (see the header); exec and dev must stay allowed on them. */
export function deviceMount(d: DeviceMount): OciMount {
  return {
    destination: d.destination,
    type: "bind",
    source: d.source,
    options: ["bind", "nosuid", "noexec"],
  };
}
