/**
 * Turns a run request into the OCI runtime configuration (config.json) for
 * rootless runc, plus the container's /etc/passwd and /etc/group, as plain
 * data. Reads only the files it is given by path (mount sources, devices, the
 * seccomp profile, the init binary); creates and mounts nothing.
 *
 * Choices (see docs/user/running.md, "What the container sees"):
 * - Namespaces: user, mount and uts (the host's hostname, changes stay
 *   private); pid only with `--pid=private`. The host's network and IPC are
 *   shared, as Sarus and Apptainer do: MPI needs both, SysV/POSIX IPC checks
 *   happen in the host's namespace where container root has no privilege, and
 *   an unprivileged user namespace can mount neither sysfs nor mqueue for them.
 * - /proc is the host's (recursive bind) unless the pid namespace is private,
 *   since a proc instance can only be mounted by the owner of its pid
 *   namespace. /sys is the host's, read-only, as runc's rootless defaults.
 * - /dev/shm is the host's (shared memory with the host's processes and other
 *   containers), except in a job step: there the step's ranks share one
 *   container (join.ts), and a tmpfs of its own keeps their shared-memory
 *   files, which a killed rank leaves, from outliving the step; /tmp a
 *   private tmpfs; /etc/resolv.conf and /etc/hosts the host's, read-only.
 * - No cgroupsPath and no resources: rootless runc cannot use cgroup v1, and a
 *   limit the user could not set outside is not theirs to set inside.
 * - No rlimits: the caller's limits (ulimit, Slurm's) carry over unchanged.
 */
import { exists } from "../sys/fs.ts";
import { join, normalize, resolve } from "../path.ts";
import { ConfigError, ShoalError, UsageError } from "../errors.ts";
import type { SiteConfig } from "../config/schema.ts";
import { expand } from "../config/load.ts";
import type { ImageMetadata } from "../image/store/metadata.ts";
import type { SubidRange } from "../sys/subid.ts";
import { containerIdOf, idMap, type IdMapping } from "./idmap.ts";
import {
  type BindMount,
  checkAllowedDestination,
  type MountRequest,
  resolveMounts,
  withLockedFlags,
} from "./mounts.ts";
import { type EnvOption, mergeEnvironment } from "./env.ts";
import { containerGroup, containerPasswd, containerShell, type PasswdEntry } from "./passwd.ts";
import {
  type CdiDeviceRequest,
  type DeviceMount,
  deviceMount,
  type DeviceRequest,
  resolveDevice,
} from "./devices.ts";
import { OCI_VERSION, type OciLinux, type OciMount, type OciSpec, specProblems } from "./oci.ts";
import { byteExactProcess, linkRawSources, type SourceLink } from "./raw_bytes.ts";
import { hasRawBytes } from "../bytes.ts";
import { type InstalledHook, selectHooks } from "./hooks.ts";
import type { GpuRequest } from "../gpu/option.ts";

/** What `shoal run` was asked to do, parsed. */
export interface RunRequest {
  /** The command after the image name; empty to use the image's. */
  command: string[];
  /** `--entrypoint`: replaces the image's; "" clears it. */
  entrypoint?: string;
  /** `--mount` and `-v`, in command-line order. */
  mounts: MountRequest[];
  /** `-e`, in command-line order. */
  env: EnvOption[];
  /** `-w`: must be absolute. */
  workdir?: string;
  tty: boolean;
  /**
   * Whether the driver passes stdin (`-i`, or stdin not a terminal); nothing
   * in the spec depends on it.
   */
  stdin: boolean;
  init: boolean;
  pid: "host" | "private";
  /** `--name`: the driver's container name; not part of the spec. */
  name?: string;
  annotations: Record<string, string>;
  /** `--device`: host devices and CDI devices, in command-line order. */
  devices: (DeviceRequest | CdiDeviceRequest)[];
  /** `--gpus`: GPUs by the node's CDI specs (mod/gpu/). */
  gpus?: GpuRequest;
  /** `--root` / `--fakeroot`. */
  root: boolean;
  /** `--writable-tmpfs-size` in bytes: the driver's overlay size; not part of the spec. */
  writableTmpfsSize?: number;
  /** `--mpi` / `--mpi-type`: the driver injects the host's MPI (mod/mpi/); not part of the spec. */
  mpi?: { type?: string };
  /**
   * A tmpfs of the container's own at /dev/shm instead of the host's: for the ranks of a job
   * step (run.ts), whose shared-memory files then end with the step's container.
   */
  privateShm?: boolean;
}

/** What the image store's metadata says about the image. */
export type ImageInfo =
  & Pick<
    ImageMetadata,
    "env" | "entrypoint" | "cmd" | "workdir" | "user" | "passwd" | "group" | "glibc"
  >
  /** Where it is stored, for the checks that read it (cdi/glibc.ts). */
  & { reference?: string; squashfsPath?: string };

/** The calling user, as the host knows them. */
export interface UserInfo {
  name: string;
  uid: number;
  gid: number;
  /** The primary group's name; undefined when the host has none. */
  groupName?: string;
  gecos: string;
  home: string;
  shell: string;
  /** Supplementary groups of the calling process (host gids). */
  groups: { gid: number; name?: string }[];
  /** The user's ranges in /etc/subuid and /etc/subgid, in file order. */
  subuid: SubidRange[];
  subgid: SubidRange[];
  /** The calling process's environment. */
  env: Record<string, string>;
  umask: number;
}

/**
 * Where the container's user namespace comes from.
 * - "create": runc creates it from the spec's mappings (runc run by the user
 *   directly; runc 1.1 then cannot do keep-id: it fails to chown its exec fifo
 *   to container root, a subordinate id).
 * - "inherit": runc runs as root of a user namespace that already has the
 *   container's own mapping (the FUSE path makes it with newuidmap); the
 *   container stays in it, so the spec has no user namespace and no mappings.
 * - "join": the setuid helper made it (with the container's mapping) and bound
 *   it at `path`; runc joins it and uses the mappings only to look up the
 *   owner of its stdio and exec fifo, which must be the caller (the helper's
 *   header comment explains).
 */
export type UsernsSource =
  | { kind: "create" }
  | { kind: "inherit" }
  | { kind: "join"; path: string };

/** Facts about the host the container shares, and about this run's bundle. */
export interface HostInfo {
  hostname: string;
  /** Whether the host has /dev/mqueue to share. */
  mqueue: boolean;
  userns: UsernsSource;
  /**
   * The bundle directory (absolute). With the default identity, its `passwd`
   * and `group` files are bind-mounted read-only over the image's.
   */
  bundle: string;
  /**
   * The init program `--init` mounts (ResolvedPaths.init: the path the
   * installation's security checks examine); undefined when none was found.
   */
  init?: string;
  /**
   * The exec shim for commands and environments that are not UTF-8
   * (raw_bytes.ts; InstallLayout.execShim); looked at only for such a run.
   */
  execShim?: string;
  /** The installation's hooks (hooks.ts); those whose `when` matches go into config.json. */
  hooks?: InstalledHook[];
}

export interface BundleSpec {
  spec: OciSpec;
  /**
   * Contents for the container's /etc/passwd and /etc/group, to be written as
   * `passwd` and `group` in the bundle: with the default identity the spec
   * bind-mounts them (runc resolves the destination inside the rootfs). With
   * `--root` the spec leaves the image's files alone, since useradd and package
   * scripts replace them by rename(2), which fails on a mount point; these are
   * then the image's own.
   */
  passwd: string;
  group: string;
  /** The container's command as the user gave it (the spec's may start with the exec shim). */
  command: string[];
  /** Symlinks to write in the bundle for bind sources that are not UTF-8 (raw_bytes.ts). */
  links: SourceLink[];
  /** Things the user should be told (one line each). */
  warnings: string[];
}

/** What `--root` grants inside the user namespace: Docker's default set. */
export const ROOT_CAPABILITIES = [
  "CAP_CHOWN",
  "CAP_DAC_OVERRIDE",
  "CAP_FOWNER",
  "CAP_SETUID",
  "CAP_SETGID",
  "CAP_KILL",
  "CAP_NET_BIND_SERVICE",
  "CAP_AUDIT_WRITE",
  "CAP_SYS_CHROOT",
  "CAP_FSETID",
  "CAP_MKNOD",
  "CAP_SETFCAP",
  "CAP_SETPCAP",
];

/** Where `--init` puts the init binary: on /dev's tmpfs, so the image is not touched. */
export const INIT_PATH = "/dev/init";

/** runc's default masked and read-only paths (`runc spec`). */
export const MASKED_PATHS = [
  "/proc/acpi",
  "/proc/asound",
  "/proc/kcore",
  "/proc/keys",
  "/proc/latency_stats",
  "/proc/timer_list",
  "/proc/timer_stats",
  "/proc/sched_debug",
  "/sys/firmware",
  "/proc/scsi",
];
export const READONLY_PATHS = [
  "/proc/bus",
  "/proc/fs",
  "/proc/irq",
  "/proc/sys",
  "/proc/sysrq-trigger",
];

/** Parses `--annotation KEY=VALUE`. */
export function parseAnnotationOption(spec: string): [string, string] {
  const eq = spec.indexOf("=");
  if (eq <= 0) throw new UsageError(`--annotation ${spec}: expected KEY=VALUE`);
  return [spec.slice(0, eq), spec.slice(eq + 1)];
}

/**
 * The container's command, by Docker's rules: an `--entrypoint` replaces the
 * image's ENTRYPOINT and drops its CMD ("" clears the entrypoint); a command
 * given replaces CMD.
 */
export function containerArgs(
  request: Pick<RunRequest, "command" | "entrypoint">,
  image: ImageInfo,
): string[] {
  const overridden = request.entrypoint !== undefined;
  const entrypoint = overridden
    ? (request.entrypoint === "" ? [] : [request.entrypoint!])
    : image.entrypoint;
  const cmd = request.command.length > 0 ? request.command : overridden ? [] : image.cmd;
  const args = [...entrypoint, ...cmd];
  if (args.length === 0) {
    throw new UsageError(
      overridden
        ? "no command to run: --entrypoint '' clears the image's ENTRYPOINT and CMD (give a command after the image name)"
        : "no command to run: the image has no ENTRYPOINT or CMD (give one after the image name)",
    );
  }
  if (args[0] === "") {
    const from = overridden || request.command.length > 0
      ? "'' given as the program to run"
      : "the image's ENTRYPOINT or CMD starts with ''";
    throw new UsageError(`the command to run has an empty name: ${from}`, {
      hint: "name a program after the image, e.g. sh -c '...'",
    });
  }
  return args;
}

/** The working directory: `-w` (absolute), else the image's, else /. */
export function containerCwd(request: RunRequest, image: ImageInfo): string {
  if (request.workdir !== undefined) {
    if (hasRawBytes(request.workdir)) {
      throw new UsageError(
        `--workdir ${request.workdir}: not valid UTF-8, which runc cannot take (choose a UTF-8 path)`,
      );
    }
    if (!request.workdir.startsWith("/")) {
      throw new UsageError(`--workdir ${request.workdir}: must be an absolute path`);
    }
    return normalize(request.workdir);
  }
  return image.workdir === "" ? "/" : resolve("/", image.workdir);
}

/** The runc rootless defaults, adapted to a shared pid/IPC namespace (see the header). */
function baseMounts(request: RunRequest, host: HostInfo): OciMount[] {
  const mounts: OciMount[] = [
    request.pid === "private"
      ? {
        destination: "/proc",
        type: "proc",
        source: "proc",
        options: ["nosuid", "noexec", "nodev"],
      }
      : {
        destination: "/proc",
        type: "bind",
        source: "/proc",
        options: ["rbind", "nosuid", "noexec", "nodev"],
      },
    {
      destination: "/dev",
      type: "tmpfs",
      source: "tmpfs",
      options: ["nosuid", "strictatime", "mode=755", "size=65536k"],
    },
    {
      destination: "/dev/pts",
      type: "devpts",
      source: "devpts",
      options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
    },
    request.privateShm
      ? {
        destination: "/dev/shm",
        type: "tmpfs",
        source: "shm",
        options: ["nosuid", "nodev", "noexec", "mode=1777"],
      }
      : {
        destination: "/dev/shm",
        type: "bind",
        source: "/dev/shm",
        options: ["rbind", "nosuid", "nodev", "noexec"],
      },
  ];
  if (host.mqueue) {
    mounts.push({
      destination: "/dev/mqueue",
      type: "bind",
      source: "/dev/mqueue",
      options: ["bind", "nosuid", "nodev", "noexec"],
    });
  }
  mounts.push(
    {
      destination: "/sys",
      type: "bind",
      source: "/sys",
      options: ["rbind", "nosuid", "noexec", "nodev", "ro"],
    },
    {
      destination: "/tmp",
      type: "tmpfs",
      source: "tmpfs",
      options: ["nosuid", "nodev", "mode=1777"],
    },
  );
  for (const file of ["/etc/resolv.conf", "/etc/hosts"]) {
    mounts.push({
      destination: file,
      type: "bind",
      source: file,
      options: ["bind", "ro", "nosuid", "nodev", "noexec"],
    });
  }
  return mounts;
}

function bindMount(m: BindMount): OciMount {
  const options = ["rbind", "nosuid", "nodev"];
  if (m.readonly) options.push("ro");
  return { destination: m.destination, type: "bind", source: m.source, options };
}

/**
 * Site mounts that exist; missing optional ones are reported, missing others
 * refused. `$HOME` and `$USER` in their paths are the caller's (the passwd
 * home, as the container's $HOME), so a site can bind each user's own home.
 */
function siteMounts(config: SiteConfig, user: UserInfo, warnings: string[]): BindMount[] {
  const out: BindMount[] = [];
  const ids = { home: user.home, user: user.name };
  for (const [i, site] of config.mounts.entries()) {
    const path = (key: "source" | "destination") =>
      normalize(expand(site[key], ids, "site config", `mounts[${i}].${key}`));
    const m = { ...site, source: path("source"), destination: path("destination") };
    if (!exists(m.source)) {
      if (m.optional) {
        warnings.push(`site mount ${m.source} skipped: it does not exist on this node`);
        continue;
      }
      throw new ConfigError(`site mount source ${m.source} does not exist`, {
        hint: "ask your admin, or mark it optional in the site config",
      });
    }
    out.push({ source: m.source, destination: m.destination, readonly: m.readonly });
  }
  return out;
}

function devices(request: RunRequest, config: SiteConfig, warnings: string[]): DeviceMount[] {
  const out: DeviceMount[] = [];
  for (const d of config.devices) {
    const req: DeviceRequest = {
      hostPath: d.path,
      containerPath: d.containerPath ?? d.path,
      access: d.access,
      option: `site device ${d.path}`,
    };
    const mount = resolveDevice(req, true);
    if (mount === null) warnings.push(`site device ${d.path} skipped: not present on this node`);
    else out.push(mount);
  }
  for (const req of request.devices) {
    if ("cdi" in req) continue;
    checkAllowedDestination(req.option, req.containerPath, config.forbiddenMountDestinations);
    out.push(resolveDevice(req)!);
  }
  return out;
}

/** Read sync: it is on every run's start, where an async read costs ~0.5 ms (bench/startup.ts). */
function seccompProfile(path: string): Record<string, unknown> {
  let profile: unknown;
  try {
    profile = JSON.parse(Deno.readTextFileSync(path));
  } catch (err) {
    throw new ConfigError(`seccomp profile ${path}: ${(err as Error).message}`, { cause: err });
  }
  if (
    typeof profile !== "object" || profile === null ||
    typeof (profile as { defaultAction?: unknown }).defaultAction !== "string"
  ) {
    throw new ConfigError(
      `seccomp profile ${path}: not an OCI linux.seccomp object (needs "defaultAction")`,
    );
  }
  return profile as Record<string, unknown>;
}

function initMount(source: string | undefined): OciMount {
  if (source === undefined) {
    throw new ConfigError("--init: no init program found (catatonit or tini)", {
      hint: "install catatonit or set runtime.init in the site config",
    });
  }
  if (!exists(source)) {
    throw new ConfigError(`--init: the init program ${source} does not exist`, {
      hint: "install catatonit or set runtime.init in the site config",
    });
  }
  return {
    destination: INIT_PATH,
    type: "bind",
    source,
    options: ["bind", "ro", "nosuid", "nodev"],
  };
}

/** The exec shim's host path; only a run whose command or environment is not UTF-8 asks. */
function execShim(source: string | undefined): string {
  if (source === undefined || !exists(source)) {
    throw new ConfigError(
      `the command or environment holds bytes that are not UTF-8, which need shoal's exec shim ${
        source ?? "shoal-exec"
      }, missing from this installation`,
      { hint: "reinstall shoal with install.sh (it builds the shim with gcc and libc6-dev)" },
    );
  }
  return source;
}

/**
 * The bundle's generated passwd and group over the image's, read-only; they
 * are written after the spec, so the locked flags are those of the bundle dir.
 */
function identityMounts(bundle: string): OciMount[] {
  const options = withLockedFlags(["bind", "ro", "nosuid", "nodev", "noexec"], bundle);
  return ["passwd", "group"].map((name) => ({
    destination: `/etc/${name}`,
    type: "bind",
    source: join(bundle, name),
    options: [...options],
  }));
}

/**
 * A writable $HOME for a container user who is not root: their home's path
 * seldom exists in the image and is not theirs where it does, so pip, conda,
 * shells and caches would fail. It is a tmpfs of theirs (its files vanish with
 * the container, as the writable layer's do) unless a mount already puts a
 * directory at or above it: the site's (`$HOME` in site mounts) or the user's
 * `-v`. Root writes where it likes, and keeps the image's /root.
 */
function homeMount(self: PasswdEntry, mounts: OciMount[]): OciMount[] {
  const home = normalize(self.home);
  if (self.uid === 0 || !home.startsWith("/") || home === "/") return [];
  const covered = mounts.some((m) =>
    m.destination === home || home.startsWith(`${m.destination.replace(/\/$/, "")}/`)
  );
  if (covered) return [];
  return [{
    destination: home,
    type: "tmpfs",
    source: "tmpfs",
    options: ["nosuid", "nodev", "mode=700", `uid=${self.uid}`, `gid=${self.gid}`],
  }];
}

/** The spec's id mappings for where the user namespace comes from (see UsernsSource). */
function userNamespace(
  source: UsernsSource,
  root: boolean,
  user: UserInfo,
  uids: IdMapping[],
  gids: IdMapping[],
): Pick<OciLinux, "uidMappings" | "gidMappings"> {
  if (source.kind === "inherit") return {};
  if (source.kind === "create") return { uidMappings: uids, gidMappings: gids };
  const lookup = (own: number) => [
    { containerID: 0, hostID: own, size: 1 },
    ...(root ? [] : [{ containerID: own, hostID: own, size: 1 }]),
  ];
  return { uidMappings: lookup(user.uid), gidMappings: lookup(user.gid) };
}

const NO_SUBIDS =
  "only your own id is mapped into the container, so package managers and other tools that change file owners may fail (ask your admin for a range)";

/** Builds the bundle's config.json and identity files for one run. */
export async function buildBundleSpec(
  request: RunRequest,
  image: ImageInfo,
  config: SiteConfig,
  user: UserInfo,
  host: HostInfo,
): Promise<BundleSpec> {
  const warnings: string[] = [];
  const uids = idMap(user.uid, user.subuid, request.root);
  const gids = idMap(user.gid, user.subgid, request.root);
  const missing = [
    ...(uids.subordinate ? [] : ["/etc/subuid"]),
    ...(gids.subordinate ? [] : ["/etc/subgid"]),
  ];
  if (missing.length > 0) {
    warnings.push(`no ${missing.join(" or ")} range for ${user.name}: ${NO_SUBIDS}`);
  }

  const groupName = user.groupName ?? `group${user.gid}`;
  const self: PasswdEntry = request.root
    ? { name: "root", uid: 0, gid: 0, gecos: "root", home: "/root", shell: "/bin/sh" }
    : {
      name: user.name,
      uid: user.uid,
      gid: user.gid,
      gecos: user.gecos,
      home: user.home,
      shell: containerShell(image.passwd, user.shell),
    };
  const visible = user.groups
    .filter((g) => g.gid !== user.gid)
    .flatMap((g) => {
      const gid = containerIdOf(gids.mappings, g.gid);
      return gid === undefined ? [] : [{ gid, name: g.name }];
    });
  const passwd = containerPasswd(image.passwd, self, request.root);
  const group = containerGroup(
    image.group,
    { name: groupName, gid: user.gid, members: [] },
    self.name,
    visible,
    request.root,
  );

  const env = mergeEnvironment({
    host: user.env,
    identity: { HOME: self.home, USER: self.name, LOGNAME: self.name },
    image: image.env,
    site: config.environment,
    options: request.env,
  });
  const command = containerArgs(request, image);
  const cwd = containerCwd(request, image);

  const site = siteMounts(config, user, warnings);
  const taken = new Map(site.map((m) => [m.destination, `site mount ${m.source}`]));
  const userMounts = await resolveMounts(request.mounts, config.forbiddenMountDestinations, taken);
  const base = baseMounts(request, host);
  const added = [
    ...site.map(bindMount),
    ...userMounts.map(bindMount),
    ...devices(request, config, warnings).map(deviceMount),
  ];
  // Before the mounts that may lie inside it.
  const mounts = [...base, ...homeMount(self, [...base, ...added]), ...added];
  const proc = byteExactProcess(command, env, () => execShim(host.execShim));
  mounts.push(...proc.mounts);
  let args = proc.args;
  if (request.init) {
    mounts.push(initMount(host.init));
    args = [INIT_PATH, "--", ...args];
  }
  for (const m of mounts) {
    if (m.type === "bind") m.options = withLockedFlags(m.options ?? [], m.source);
  }
  const links = linkRawSources(mounts, host.bundle);
  if (!request.root) mounts.splice(base.length, 0, ...identityMounts(host.bundle));

  const caps = request.root ? ROOT_CAPABILITIES : [];
  const spec: OciSpec = {
    ociVersion: OCI_VERSION,
    process: {
      terminal: request.tty,
      user: { uid: self.uid, gid: self.gid, umask: user.umask },
      args,
      env: proc.env,
      cwd,
      capabilities: {
        bounding: [...caps],
        effective: [...caps],
        permitted: [...caps],
        inheritable: [],
        ambient: [],
      },
      noNewPrivileges: true,
    },
    root: { path: "rootfs", readonly: false },
    hostname: host.hostname,
    mounts,
    linux: {
      ...userNamespace(host.userns, request.root, user, uids.mappings, gids.mappings),
      namespaces: [
        ...(request.pid === "private" ? [{ type: "pid" as const }] : []),
        { type: "uts" },
        { type: "mount" },
        ...(host.userns.kind === "inherit" ? [] : [
          host.userns.kind === "join"
            ? { type: "user" as const, path: host.userns.path }
            : { type: "user" as const },
        ]),
      ],
      maskedPaths: [...MASKED_PATHS],
      readonlyPaths: [...READONLY_PATHS],
    },
  };
  if (Object.keys(request.annotations).length > 0) spec.annotations = { ...request.annotations };
  const hooks = selectHooks(host.hooks ?? [], {
    annotations: request.annotations,
    command: command[0]!,
    hasBindMounts: request.mounts.length > 0,
  });
  if (Object.keys(hooks).length > 0) spec.hooks = hooks;
  const cdi = request.devices.flatMap((d) => "cdi" in d ? [d.cdi] : []);
  if (cdi.length > 0 || request.gpus !== undefined) {
    const ctx = {
      dirs: config.cdiSpecDirs,
      checked: config.securityChecks,
      gidMappings: gids.mappings,
    };
    // Loaded only by runs that ask for CDI devices or GPUs: others read no spec dir.
    let devices;
    if (request.gpus === undefined) {
      const { applyCdiDevices } = await import("../cdi/apply.ts");
      devices = await applyCdiDevices(spec, cdi, ctx, warnings);
    } else {
      const { applyGpus } = await import("../gpu/apply.ts");
      const userSet = request.env.map((e) => e.name);
      devices = await applyGpus(
        spec,
        { gpus: request.gpus, cdi, hostEnv: user.env, userSet },
        ctx,
        warnings,
      );
    }
    const { checkDriverGlibc } = await import("../cdi/glibc.ts");
    await checkDriverGlibc(devices, image);
  }
  if (config.seccompProfile !== undefined) {
    spec.linux.seccomp = seccompProfile(config.seccompProfile);
  }
  const problems = specProblems(spec);
  if (problems.length > 0) {
    throw new ShoalError(`generated an invalid OCI runtime config: ${problems.join("; ")}`);
  }
  return { spec, passwd, group, command, links, warnings };
}
