/**
 * /etc/passwd and /etc/group for the container: the image's own files with
 * the container user added, so `id`, `whoami`, `ls -l` and $HOME lookups work
 * while the image's users (root, _apt, www-data...) keep existing.
 *
 * Merge rule (keep-id; with `--root` the image's root entries are kept and the
 * caller, who is root, is not added again):
 * - An image entry with the caller's NAME is dropped: the name must mean the
 *   caller. The caller's entry comes first, so lookups by id find it.
 * - An image entry with the caller's ID but another name stays, after the
 *   caller's: its name keeps resolving, the id shows as the caller.
 * - Supplementary groups the container can see (mapped gids) get an entry
 *   listing the container user as member: an image group with that gid gains
 *   the member; otherwise a group named as on the host (`group<gid>` when the
 *   host has no name or the image uses the name for another gid).
 * Lines that are not entries (comments, blanks) are kept as they are.
 */
import type { Group, Passwd } from "../sys/user.ts";

/** A passwd line's fields: the same as the host's user database gives. */
export type PasswdEntry = Passwd;

export interface GroupEntry extends Group {
  /** The password field as the image has it; "x" when made here. */
  password?: string;
}

/** A supplementary group: its id inside the container and its host name, if any. */
export interface VisibleGroup {
  gid: number;
  name?: string;
}

interface Line<T> {
  raw: string;
  entry?: T;
}

function field(n: string): number | undefined {
  return /^\d+$/.test(n) ? Number(n) : undefined;
}

function parsePasswd(text: string): Line<PasswdEntry>[] {
  return lines(text).map((raw) => {
    const f = raw.split(":");
    const uid = field(f[2] ?? "");
    const gid = field(f[3] ?? "");
    if (f.length !== 7 || f[0] === "" || uid === undefined || gid === undefined) return { raw };
    return {
      raw,
      entry: { name: f[0]!, uid, gid, gecos: f[4]!, home: f[5]!, shell: f[6]! },
    };
  });
}

function parseGroup(text: string): Line<GroupEntry>[] {
  return lines(text).map((raw) => {
    const f = raw.split(":");
    const gid = field(f[2] ?? "");
    if (f.length !== 4 || f[0] === "" || gid === undefined) return { raw };
    const members = f[3] === "" ? [] : f[3]!.split(",");
    return { raw, entry: { name: f[0]!, gid, members, password: f[1]! } };
  });
}

function lines(text: string): string[] {
  const all = text.split("\n");
  if (all.at(-1) === "") all.pop();
  return all;
}

function formatPasswd(e: PasswdEntry): string {
  return `${e.name}:x:${e.uid}:${e.gid}:${e.gecos}:${e.home}:${e.shell}`;
}

function formatGroup(e: GroupEntry): string {
  return `${e.name}:${e.password ?? "x"}:${e.gid}:${e.members.join(",")}`;
}

function text(rows: string[]): string {
  return rows.length === 0 ? "" : `${rows.join("\n")}\n`;
}

const ROOT_USER: PasswdEntry = {
  name: "root",
  uid: 0,
  gid: 0,
  gecos: "root",
  home: "/root",
  shell: "/bin/sh",
};

/**
 * The shell the caller gets: their host shell when an image entry uses the same
 * one (so it exists in the image), else /bin/sh.
 */
export function containerShell(imagePasswd: string, hostShell: string): string {
  const used = parsePasswd(imagePasswd).some((l) => l.entry?.shell === hostShell);
  return used && hostShell !== "" ? hostShell : "/bin/sh";
}

/** The container's /etc/passwd. `user` is the caller's entry; ignored with `root`. */
export function containerPasswd(imagePasswd: string, user: PasswdEntry, root: boolean): string {
  const image = parsePasswd(imagePasswd);
  if (root) {
    if (image.some((l) => l.entry?.uid === 0)) return text(image.map((l) => l.raw));
    return text([formatPasswd(ROOT_USER), ...image.map((l) => l.raw)]);
  }
  const kept = image.filter((l) => l.entry?.name !== user.name).map((l) => l.raw);
  return text([formatPasswd(user), ...kept]);
}

/**
 * The container's /etc/group. `primary` is the caller's primary group (ignored
 * with `root`); `member` the container user's name; `supplementary` the
 * groups visible inside, by container gid.
 */
export function containerGroup(
  imageGroup: string,
  primary: GroupEntry,
  member: string,
  supplementary: VisibleGroup[],
  root: boolean,
): string {
  const image = parseGroup(imageGroup);
  const head: GroupEntry[] = [];
  let rows = image;
  if (root) {
    if (!image.some((l) => l.entry?.gid === 0)) head.push({ name: "root", gid: 0, members: [] });
  } else {
    rows = image.filter((l) => l.entry?.name !== primary.name);
    head.push(primary);
  }
  const byGid = (gid: number) =>
    head.find((g) => g.gid === gid) ?? rows.find((l) => l.entry?.gid === gid)?.entry;
  const tail: GroupEntry[] = [];
  for (const g of supplementary) {
    const existing = byGid(g.gid) ?? tail.find((t) => t.gid === g.gid);
    if (existing !== undefined) {
      if (!existing.members.includes(member)) existing.members.push(member);
      continue;
    }
    const taken = (name: string) =>
      [...head, ...tail].some((e) => e.name === name) || rows.some((l) => l.entry?.name === name);
    const name = g.name !== undefined && g.name !== "" && !taken(g.name) ? g.name : `group${g.gid}`;
    tail.push({ name, gid: g.gid, members: [member] });
  }
  return text([
    ...head.map(formatGroup),
    ...rows.map((l) => l.entry === undefined ? l.raw : formatGroup(l.entry)),
    ...tail.map(formatGroup),
  ]);
}
