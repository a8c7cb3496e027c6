/**
 * Capabilities: of this process (capget, the bounding set, no_new_privs) and
 * of files (the security.capability attribute, as `setcap` writes it).
 */
import { check, cString, Errno, errno, ErrnoError, libc } from "./libc.ts";

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

const LINUX_CAPABILITY_VERSION_3 = 0x20080522;
const PR_CAPBSET_READ = 23;
const PR_GET_NO_NEW_PRIVS = 39;

function bits(low: number, high: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < 32; i++) {
    if (low & (1 << i)) out.push(i);
  }
  for (let i = 0; i < 32; i++) {
    if (high & (1 << i)) out.push(32 + i);
  }
  return out;
}

export function processCaps(): ProcessCaps {
  const c = libc();
  const header = new Uint8Array(8);
  new DataView(header.buffer).setUint32(0, LINUX_CAPABILITY_VERSION_3, true);
  // Two struct __user_cap_data_struct {effective, permitted, inheritable}: low and high words.
  const data = new Uint8Array(24);
  check("capget", c.capget(header, data));
  const d = new DataView(data.buffer);
  const word = (set: number, half: number) => d.getUint32(half * 12 + set * 4, true);
  const bounding: number[] = [];
  // Caps past the kernel's last one read as EINVAL; 64 bounds the loop.
  for (let cap = 0; cap < 64; cap++) {
    const r = c.prctl(PR_CAPBSET_READ, BigInt(cap), 0n, 0n, 0n);
    if (r < 0) break;
    if (r === 1) bounding.push(cap);
  }
  return {
    effective: bits(word(0, 0), word(0, 1)),
    permitted: bits(word(1, 0), word(1, 1)),
    inheritable: bits(word(2, 0), word(2, 1)),
    bounding,
    noNewPrivs: check("prctl", c.prctl(PR_GET_NO_NEW_PRIVS, 0n, 0n, 0n, 0n)) === 1,
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
    permitted: bits(view.getUint32(4, true), high(12)),
    inheritable: bits(view.getUint32(8, true), high(16)),
    effective: (magic & VFS_CAP_FLAGS_EFFECTIVE) !== 0,
  };
}
