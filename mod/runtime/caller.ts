/**
 * The facts buildBundleSpec needs about the calling user and the host, read
 * from the running system (NSS, /etc/subuid, /etc/subgid, the environment).
 */
import { credentials, getgrgid, getpwuid } from "../sys/user.ts";
import { rangesOf, readSubidFile, SUBGID_FILE, SUBUID_FILE } from "../sys/subid.ts";
import { ShoalError } from "../errors.ts";
import type { HostInfo, UserInfo, UsernsSource } from "./spec.ts";
import { hostEnvironment } from "./env.ts";

export async function callerInfo(): Promise<UserInfo> {
  const creds = credentials();
  const pw = getpwuid(creds.uid);
  if (pw === null) {
    throw new ShoalError(`your uid ${creds.uid} has no user name`, {
      hint: "the user database (NSS) must know you to map your ids",
    });
  }
  const [subuids, subgids] = await Promise.all([
    readSubidFile(SUBUID_FILE),
    readSubidFile(SUBGID_FILE),
  ]);
  const groupName = getgrgid(creds.gid)?.name;
  return {
    name: pw.name,
    uid: creds.uid,
    gid: creds.gid,
    ...(groupName === undefined ? {} : { groupName }),
    gecos: pw.gecos,
    home: pw.home,
    shell: pw.shell,
    groups: creds.groups.map((gid) => {
      const name = getgrgid(gid)?.name;
      return name === undefined ? { gid } : { gid, name };
    }),
    subuid: rangesOf(subuids, pw.name, creds.uid),
    subgid: rangesOf(subgids, pw.name, creds.uid),
    env: hostEnvironment(),
    umask: Deno.umask(),
  };
}

/** `userns`, `bundle`, `init` and `execShim`: see HostInfo. */
export function hostInfo(
  userns: UsernsSource,
  bundle: string,
  init?: string,
  execShim?: string,
): HostInfo {
  let mqueue = false;
  try {
    mqueue = Deno.statSync("/dev/mqueue").isDirectory;
  } catch { /* no /dev/mqueue: nothing to share */ }
  return { hostname: Deno.hostname(), mqueue, userns, bundle, init, execShim };
}
