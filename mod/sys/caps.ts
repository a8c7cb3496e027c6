/**
 * Capabilities: of this process (its sets, the bounding set, no_new_privs, as
 * /proc/self/status gives them) and of files (the security.capability
 * attribute, as `setcap` writes it).
 */
import { cString, Errno, errno, ErrnoError, libc } from "./libc.ts";
import { processStatus } from "./status.ts";

/** Capability names by number (linux/capability.h). */
export const CAP_NAMES = [
  "cap_chown",
  "cap_dac_override",
  "cap_dac_read_search",
  "cap_fowner",
  "cap_fsetid",
  "cap_kill",
  "cap_setgid",
  "cap_setuid",
  "cap_setpcap",
  "cap_linux_immutable",
  "cap_net_bind_service",
  "cap_net_broadcast",
  "cap_net_admin",
  "cap_net_raw",
  "cap_ipc_lock",
  "cap_ipc_owner",
  "cap_sys_module",
  "cap_sys_rawio",
  "cap_sys_chroot",
  "cap_sys_ptrace",
  "cap_sys_pacct",
  "cap_sys_admin",
  "cap_sys_boot",
  "cap_sys_nice",
  "cap_sys_resource",
  "cap_sys_time",
  "cap_sys_tty_config",
  "cap_mknod",
  "cap_lease",
  "cap_audit_write",
  "cap_audit_control",
  "cap_setfcap",
  "cap_mac_override",
  "cap_mac_admin",
  "cap_syslog",
  "cap_wake_alarm",
  "cap_block_suspend",
  "cap_audit_read",
  "cap_perfmon",
  "cap_bpf",
  "cap_checkpoint_restore",
] as const;

export const Cap = { SETGID: 6, SETUID: 7, SYS_ADMIN: 21 } as const;

export function capName(cap: number): string {
  return CAP_NAMES[cap] ?? `cap_${cap}`;
}

export interface ProcessCaps {
  effective: number[];
  permitted: number[];
  inheritable: number[];
  /** Capabilities this process and its children (setuid programs too) can ever hold. */
  bounding: number[];
  /** Set by a parent (or a batch system): setuid and file capabilities no longer elevate. */
  noNewPrivs: boolean;
}

/** The 64-bit mask of a low and a high 32-bit word. */
function words(low: number, high: number): bigint {
  return (BigInt(high) << 32n) | BigInt(low);
}

/** The capability numbers set in a 64-bit mask. */
function bits(mask: bigint): number[] {
  const out: number[] = [];
  for (let cap = 0; cap < 64; cap++) {
    if ((mask >> BigInt(cap)) & 1n) out.push(cap);
  }
  return out;
}

export function processCaps(): ProcessCaps {
  const status = processStatus();
  return {
    effective: bits(status.capEffective),
    permitted: bits(status.capPermitted),
    inheritable: bits(status.capInheritable),
    bounding: bits(status.capBounding),
    noNewPrivs: status.noNewPrivs,
  };
}

export interface FileCaps {
  permitted: number[];
  inheritable: number[];
  /** Whether the permitted set becomes effective at exec (setcap's `+ep`). */
  effective: boolean;
}

const VFS_CAP_REVISION_MASK = 0xff000000;
const VFS_CAP_REVISION_1 = 0x01000000;
const VFS_CAP_FLAGS_EFFECTIVE = 0x000001;

/** The file capabilities of `path` (following symlinks), or null if it has none. */
export function fileCaps(path: string): FileCaps | null {
  // vfs_cap_data: magic_etc, then {permitted, inheritable} low and high (v3 adds rootid).
  const buf = new Uint8Array(24);
  const n = libc().getxattr(cString(path), cString("security.capability"), buf, BigInt(buf.length));
  if (n < 0) {
    const code = errno();
    if (code === Errno.ENODATA || code === Errno.EOPNOTSUPP) return null;
    throw new ErrnoError("getxattr", code, path);
  }
  const view = new DataView(buf.buffer);
  const magic = view.getUint32(0, true);
  const v1 = (magic & VFS_CAP_REVISION_MASK) === VFS_CAP_REVISION_1;
  const high = (offset: number) => (v1 || n < 20 ? 0 : view.getUint32(offset, true));
  return {
    permitted: bits(words(view.getUint32(4, true), high(12))),
    inheritable: bits(words(view.getUint32(8, true), high(16))),
    effective: (magic & VFS_CAP_FLAGS_EFFECTIVE) !== 0,
  };
}
