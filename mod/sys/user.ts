/**
 * Who the process runs as, and the user and group databases through NSS
 * (getpwuid_r/getgrgid_r), so users and groups from LDAP or SSSD resolve as
 * they do for `id`; /etc/passwd alone misses them on most clusters.
 */
import { cString, Errno, ErrnoError, libc, ptr, readCStringPointer, readPointer } from "./libc.ts";
import { processStatus } from "./status.ts";

export interface Credentials {
  uid: number;
  euid: number;
  gid: number;
  egid: number;
  /** Supplementary groups of the process. */
  groups: number[];
}

export function credentials(): Credentials {
  const status = processStatus();
  return {
    uid: status.uids[0],
    euid: status.uids[1],
    gid: status.gids[0],
    egid: status.gids[1],
    groups: status.groups,
  };
}

export interface Passwd {
  name: string;
  uid: number;
  gid: number;
  gecos: string;
  home: string;
  shell: string;
}

export interface Group {
  name: string;
  gid: number;
  members: string[];
}

// struct passwd on 64-bit Linux: name, passwd, uid, gid, gecos, dir, shell.
const PASSWD_SIZE = 48;
// struct group on 64-bit Linux: name, passwd, gid, (pad), mem.
const GROUP_SIZE = 32;

/**
 * Calls a get*_r function with a growing string buffer and hands the filled
 * struct to `read` while the strings it points to are still alive; null when
 * the id has no entry.
 */
function withEntry<T>(
  call: "getpwuid_r" | "getgrgid_r" | "getpwnam_r",
  id: number | string,
  structSize: number,
  read: (struct: Uint8Array<ArrayBuffer>) => T,
): T | null {
  const struct = new Uint8Array(structSize);
  const result = new Uint8Array(8);
  for (let size = 1024; size <= 1 << 22; size *= 4) {
    const strings = new Uint8Array(size);
    const rc = typeof id === "string"
      ? libc().getpwnam_r(ptr(cString(id)), ptr(struct), ptr(strings), BigInt(size), ptr(result))
      : libc()[call as "getpwuid_r" | "getgrgid_r"](
        id,
        ptr(struct),
        ptr(strings),
        BigInt(size),
        ptr(result),
      );
    if (rc === Errno.ERANGE) continue;
    if (rc !== 0) throw new ErrnoError(call, rc, String(id));
    if (readPointer(result, 0) === null) return null;
    const value = read(struct);
    strings.fill(0); // keeps `strings` reachable until the pointers into it were read
    return value;
  }
  throw new ErrnoError(call, Errno.ERANGE, String(id));
}

/*
 * Entries found are kept for the life of the process: a run asks for its
 * user's several times, and each lookup goes through NSS (nscd's socket,
 * then /etc/passwd or the directory service). One not found is asked again.
 */
const users = new Map<number, Passwd>();
const groups = new Map<number, Group>();

function remembered<T>(
  cache: Map<number, T>,
  id: number,
  look: (id: number) => T | null,
): T | null {
  const known = cache.get(id);
  if (known !== undefined) return known;
  const found = look(id);
  // Shared by every caller from now on.
  if (found !== null) cache.set(id, Object.freeze(found));
  return found;
}

/** The user database entry of `uid`, or null when NSS knows no such user. */
export function getpwuid(uid: number): Passwd | null {
  return remembered(users, uid, lookupUser);
}

/** The group database entry of `gid`, or null when NSS knows no such group. */
export function getgrgid(gid: number): Group | null {
  return remembered(groups, gid, lookupGroup);
}

/** The user database entry of the account `name`, or null when NSS knows none. */
export function getpwnam(name: string): Passwd | null {
  return lookupUser(name);
}

function lookupUser(key: number | string): Passwd | null {
  return withEntry(typeof key === "string" ? "getpwnam_r" : "getpwuid_r", key, PASSWD_SIZE, (s) => {
    const view = new DataView(s.buffer);
    return {
      name: readCStringPointer(s, 0) ?? "",
      uid: view.getUint32(16, true),
      gid: view.getUint32(20, true),
      gecos: readCStringPointer(s, 24) ?? "",
      home: readCStringPointer(s, 32) ?? "",
      shell: readCStringPointer(s, 40) ?? "",
    };
  });
}

function lookupGroup(gid: number): Group | null {
  return withEntry("getgrgid_r", gid, GROUP_SIZE, (s) => {
    const members: string[] = [];
    const list = readPointer(s, 24);
    if (list !== null) {
      const view = new Deno.UnsafePointerView(list);
      for (let i = 0; i < 1 << 16; i++) {
        const member = view.getPointer(i * 8);
        if (member === null) break;
        members.push(Deno.UnsafePointerView.getCString(member));
      }
    }
    return {
      name: readCStringPointer(s, 0) ?? "",
      gid: new DataView(s.buffer).getUint32(16, true),
      members,
    };
  });
}
