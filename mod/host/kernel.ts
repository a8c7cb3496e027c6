/**
 * Probes of the kernel: version, user namespaces and overlay in one (actually
 * tried, in child processes: shoal never changes namespaces in-process),
 * idmapped mounts, squashfs, cgroups. The file reads are sync: `shoal run`
 * makes them on every start, where each async one costs ~0.5 ms (bench/startup.ts).
 */
import { join } from "../path.ts";
import { FsMagic, statfs } from "../sys/fs.ts";
import { atLeast } from "../sys/kernel.ts";
import { failure, output } from "../sys/process.ts";
import type { Check } from "./check.ts";

export interface KernelFacts {
  release: string;
  /** `[major, minor]`, or null when the release string has no version. */
  version: [number, number] | null;
}

/** Overlayfs may be mounted inside a user namespace from this version on. */
const OVERLAY_USERNS = [5, 11] as const;
/** mount_setattr(MOUNT_ATTR_IDMAP), which the helper uses to show image files as the user's. */
const IDMAPPED_MOUNTS = [5, 12] as const;

export function kernelCheck(k: KernelFacts): Check {
  const base = { id: "kernel", title: "kernel version", detail: `Linux ${k.release}` };
  if (k.version === null || !atLeast(k.version, ...OVERLAY_USERNS)) {
    return {
      ...base,
      status: "warn",
      detail: `${base.detail}: older than 5.11, so no overlay in user namespaces`,
      fix: "boot a kernel >= 5.12 (the distribution's current kernel)",
    };
  }
  return { ...base, status: "ok" };
}

/** A sysctl's integer value, or undefined where this kernel has no such knob. */
function readSysctl(name: string): number | undefined {
  try {
    const text = Deno.readTextFileSync(`/proc/sys/${name.replaceAll(".", "/")}`);
    const n = Number(text.trim());
    return Number.isInteger(n) ? n : undefined;
  } catch {
    return undefined;
  }
}

export interface UsernsSysctls {
  maxUserNamespaces: number | undefined;
  /** Debian's and Ubuntu's older switch (not in mainline kernels). */
  unprivilegedUsernsClone: number | undefined;
  /** Ubuntu 23.10+ restricts unprivileged user namespaces through AppArmor. */
  apparmorRestrict: number | undefined;
}

export function usernsSysctls(): UsernsSysctls {
  return {
    maxUserNamespaces: readSysctl("user.max_user_namespaces"),
    unprivilegedUsernsClone: readSysctl("kernel.unprivileged_userns_clone"),
    apparmorRestrict: readSysctl("kernel.apparmor_restrict_unprivileged_userns"),
  };
}

const PERSIST = "and add the setting to /etc/sysctl.d/90-shoal.conf to keep it after a reboot";

/** What an admin changes to allow unprivileged user namespaces, given the knobs. */
function usernsFix(s: UsernsSysctls): string | undefined {
  if (s.maxUserNamespaces === 0) return `sysctl -w user.max_user_namespaces=15000 ${PERSIST}`;
  if (s.unprivilegedUsernsClone === 0) {
    return `sysctl -w kernel.unprivileged_userns_clone=1 ${PERSIST}`;
  }
  if (s.apparmorRestrict === 1) {
    return `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0 ${PERSIST} (or give runc and shoal an AppArmor profile with "userns,")`;
  }
  return undefined;
}

export function usernsLimitsCheck(s: UsernsSysctls): Check {
  const knobs = [
    `user.max_user_namespaces=${s.maxUserNamespaces ?? "absent"}`,
    ...(s.unprivilegedUsernsClone === undefined
      ? []
      : [`kernel.unprivileged_userns_clone=${s.unprivilegedUsernsClone}`]),
    ...(s.apparmorRestrict === undefined
      ? []
      : [`kernel.apparmor_restrict_unprivileged_userns=${s.apparmorRestrict}`]),
  ];
  const fix = usernsFix(s);
  const base = { id: "userns-limits", title: "user namespace limits", detail: knobs.join(", ") };
  if (fix !== undefined) return { ...base, status: "fail", fix };
  // Every rank of an MPI job on a node holds one or more namespaces.
  if (s.maxUserNamespaces !== undefined && s.maxUserNamespaces < 1000) {
    return {
      ...base,
      status: "warn",
      detail: `${base.detail}: too low for many containers per node`,
      fix: `sysctl -w user.max_user_namespaces=15000 ${PERSIST}`,
    };
  }
  return { ...base, status: "ok" };
}

/** Creates a user namespace in a child process, as shoal's runs do. */
export async function usernsCheck(
  unshare: string | undefined,
  s: UsernsSysctls,
): Promise<Check> {
  const base = { id: "userns", title: "unprivileged user namespaces" };
  if (unshare === undefined) {
    return {
      ...base,
      status: "fail",
      detail: "cannot try: unshare (util-linux) not found",
      fix: "apt-get install util-linux (dnf install util-linux)",
    };
  }
  const r = await output(unshare, ["--user", "--map-root-user", "true"]);
  if (r.code === 0) return { ...base, status: "ok", detail: "a user namespace was created" };
  return {
    ...base,
    status: "fail",
    detail: `unshare --user failed: ${failure(r)}`,
    fix: usernsFix(s) ??
      "allow unprivileged user namespaces (check the kernel's lockdown and LSM settings)",
  };
}

/**
 * Mounts an overlay inside a fresh user and mount namespace in a child, on a
 * temporary directory: the mount ends with the namespace; the files are removed here.
 */
export async function overlayCheck(unshare: string | undefined, k: KernelFacts): Promise<Check> {
  const base = { id: "overlay-userns", title: "overlay in a user namespace" };
  if (unshare === undefined) {
    return {
      ...base,
      status: "fail",
      detail: "cannot try: unshare (util-linux) not found",
      fix: "apt-get install util-linux",
    };
  }
  const dir = await Deno.makeTempDir({ prefix: "shoal-doctor-" });
  try {
    // Overlay leaves work/work with mode 000; root of the namespace may remove it, the user may not.
    const script = 'cd "$1" && mkdir lower upper work merged && ' +
      "mount -t overlay overlay -o lowerdir=lower,upperdir=upper,workdir=work merged && " +
      "umount merged && rm -rf work";
    const r = await output(unshare, [
      "--user",
      "--map-root-user",
      "--mount",
      "sh",
      "-c",
      script,
      "sh",
      dir,
    ]);
    if (r.code === 0) return { ...base, status: "ok", detail: "mounted and unmounted an overlay" };
    const old = k.version !== null && !atLeast(k.version, ...OVERLAY_USERNS);
    return {
      ...base,
      status: "fail",
      detail: `mount -t overlay failed: ${failure(r)}`,
      fix: old
        ? "boot a kernel >= 5.11, or install the shoal-mount helper (./install.sh as root)"
        : "allow unprivileged user namespaces and overlayfs (modprobe overlay)",
    };
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

export function idmappedCheck(k: KernelFacts): Check {
  const base = { id: "idmapped-mounts", title: "idmapped mounts" };
  if (k.version !== null && atLeast(k.version, ...IDMAPPED_MOUNTS)) {
    return { ...base, status: "ok", detail: "supported (Linux >= 5.12); used by the helper path" };
  }
  return {
    ...base,
    status: "warn",
    detail: "not supported (Linux < 5.12): the helper path needs them",
    fix: "boot a kernel >= 5.12 to use the shoal-mount helper",
  };
}

/** Kernel squashfs: built in, loaded, or a module the first mount loads. */
export function squashfsKernelCheck(k: KernelFacts): Check {
  const base = { id: "squashfs", title: "kernel squashfs" };
  let filesystems = "";
  try {
    filesystems = Deno.readTextFileSync("/proc/filesystems");
  } catch { /* no /proc: look for the module */ }
  if (/\bsquashfs$/m.test(filesystems)) {
    return { ...base, status: "ok", detail: "in /proc/filesystems; used by the helper path" };
  }
  const moduleDir = join("/lib/modules", k.release, "kernel/fs/squashfs");
  let modules: Deno.DirEntry[] = [];
  try {
    modules = [...Deno.readDirSync(moduleDir)];
  } catch { /* no such module directory */ }
  if (modules.some((e) => e.name.startsWith("squashfs.ko"))) {
    return { ...base, status: "ok", detail: "loadable module; used by the helper path" };
  }
  return {
    ...base,
    status: "warn",
    detail: "not available: the helper path needs it (the unprivileged path uses squashfuse)",
    fix: "modprobe squashfs (or install the kernel's modules package)",
  };
}

export function cgroupCheck(): Check {
  const base = { id: "cgroup", title: "cgroup version" };
  const type = (path: string) => {
    try {
      return statfs(path).type;
    } catch {
      return undefined;
    }
  };
  const root = type("/sys/fs/cgroup");
  if (root === FsMagic.CGROUP2) {
    return { ...base, status: "ok", detail: "v2 (unified) at /sys/fs/cgroup" };
  }
  const fix =
    "boot with systemd.unified_cgroup_hierarchy=1 for resource limits in rootless containers";
  if (root === FsMagic.TMPFS && type("/sys/fs/cgroup/unified") === FsMagic.CGROUP2) {
    return {
      ...base,
      status: "warn",
      detail:
        "hybrid (v1, v2 at /sys/fs/cgroup/unified): rootless containers get no resource limits",
      fix,
    };
  }
  if (root === FsMagic.TMPFS || root === FsMagic.CGROUP) {
    return {
      ...base,
      status: "warn",
      detail: "v1: rootless containers get no resource limits",
      fix,
    };
  }
  return {
    ...base,
    status: "warn",
    detail: "no cgroup filesystem at /sys/fs/cgroup",
    fix: "mount cgroup2 on /sys/fs/cgroup",
  };
}
