/**
 * Probes of identity mapping: the user's subordinate ids, the setuid
 * newuidmap/newgidmap that install them, and whether this process can still
 * gain privileges through setuid programs at all.
 */
import { Cap, capName, fileCaps, processCaps } from "../sys/caps.ts";
import { MountFlag, statfs } from "../sys/fs.ts";
import { nextFreeRange, type SubidEntry, type SubidRange } from "../sys/subid.ts";
import type { Check } from "./check.ts";

function describeRanges(ranges: SubidRange[]): string {
  const total = ranges.reduce((n, r) => n + r.count, 0);
  const list = ranges.map((r) => `${r.start}-${r.start + r.count - 1}`).join(", ");
  return `${list} (${total} ids)`;
}

/** Ids an image may use: up to 65534 (nobody), so 65536 with the user's own. */
const FULL_RANGE = 65536;

export function subidCheck(
  kind: "subuid" | "subgid",
  user: { name: string; uid: number },
  ranges: SubidRange[],
  allEntries: { subuid: SubidEntry[]; subgid: SubidEntry[] },
): Check {
  const base = { id: kind, title: `/etc/${kind} range` };
  const free = nextFreeRange([...allEntries.subuid, ...allEntries.subgid]);
  const span = `${free.start}-${free.start + free.count - 1}`;
  const fix = `usermod --add-subuids ${span} --add-subgids ${span} ${user.name}` +
    ` (for users from LDAP: add the line "${user.name}:${free.start}:${free.count}" to /etc/subuid and /etc/subgid on every node)`;
  if (ranges.length === 0) {
    if (user.uid === 0) {
      return { ...base, status: "ok", detail: "none (root maps any ids without one)" };
    }
    return {
      ...base,
      status: "fail",
      detail: `none for ${user.name}: images with files of other owners cannot be mapped`,
      fix,
    };
  }
  const total = ranges.reduce((n, r) => n + r.count, 0);
  if (total < FULL_RANGE - 1 && user.uid !== 0) {
    return {
      ...base,
      status: "warn",
      detail: `${describeRanges(ranges)}: too few for image files owned by ids up to 65534`,
      fix,
    };
  }
  return { ...base, status: "ok", detail: describeRanges(ranges) };
}

/** newuidmap/newgidmap: present, and able to gain CAP_SETUID/CAP_SETGID when run. */
export function idmapToolCheck(name: "newuidmap" | "newgidmap", path: string | undefined): Check {
  const base = { id: name, title: name };
  const install = "apt-get install uidmap (dnf install shadow-utils)";
  if (path === undefined) return { ...base, status: "fail", detail: "not found", fix: install };
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(path);
  } catch (err) {
    return { ...base, status: "fail", detail: `${path}: ${(err as Error).message}`, fix: install };
  }
  const cap = name === "newuidmap" ? Cap.SETUID : Cap.SETGID;
  const setuidRoot = info.uid === 0 && ((info.mode ?? 0) & 0o4000) !== 0;
  const caps = setuidRoot ? null : fileCaps(path);
  const hasCap = caps !== null && caps.effective && caps.permitted.includes(cap);
  if (!setuidRoot && !hasCap) {
    return {
      ...base,
      status: "fail",
      detail: `${path} is neither setuid root nor has ${capName(cap)} file capabilities`,
      fix: `chown root:root ${path} && chmod u+s ${path}`,
    };
  }
  if ((statfs(path).flags & MountFlag.NOSUID) !== 0) {
    return {
      ...base,
      status: "fail",
      detail: `${path} is on a filesystem mounted nosuid`,
      fix: `remount the filesystem holding ${path} without nosuid`,
    };
  }
  const how = setuidRoot ? "setuid root" : `file capability ${capName(cap)}+ep`;
  return { ...base, status: "ok", detail: `${path}, ${how}` };
}

/**
 * Whether setuid programs (newuidmap, the helper) can gain privileges from
 * this process: not under no_new_privs, and with the caps in the bounding set.
 */
export function privilegesCheck(uid: number): Check {
  const base = { id: "privileges", title: "setuid privileges" };
  const own = processCaps();
  if (own.noNewPrivs) {
    return {
      ...base,
      status: "fail",
      detail: "no_new_privs is set: newuidmap and the helper cannot gain privileges",
      fix:
        "start shoal from a session without no_new_privs (check the batch system or launcher that sets it)",
    };
  }
  const lacks = (caps: number[]) => caps.filter((c) => !own.bounding.includes(c)).map(capName);
  const fix = "start shoal from a session whose capability bounding set is not reduced";
  const idmap = lacks([Cap.SETUID, Cap.SETGID]);
  if (idmap.length > 0) {
    return {
      ...base,
      status: "fail",
      detail: `the capability bounding set lacks ${idmap.join(", ")}: newuidmap cannot work`,
      fix,
    };
  }
  // Container launchers (docker's defaults) drop it; only the helper needs it, to mount.
  if (lacks([Cap.SYS_ADMIN]).length > 0) {
    return {
      ...base,
      status: "warn",
      detail: "the capability bounding set lacks cap_sys_admin: the helper cannot mount",
      fix,
    };
  }
  const who = uid === 0
    ? `root with ${own.effective.length} effective capabilities`
    : "no capabilities of its own";
  return { ...base, status: "ok", detail: `${who}; setuid programs can gain theirs` };
}
