/**
 * Subordinate id ranges (/etc/subuid, /etc/subgid), read the way shadow's
 * newuidmap reads them: `owner:start:count` lines, the owner given by name or
 * by numeric uid, any number of ranges per user.
 */

export interface SubidRange {
  start: number;
  count: number;
}

export const SUBUID_FILE = "/etc/subuid";
export const SUBGID_FILE = "/etc/subgid";

const MAX_ID = 2 ** 32 - 1;

/** One `owner:start:count` line; `owner` is a user name or a numeric uid. */
export interface SubidEntry extends SubidRange {
  owner: string;
}

/**
 * The entries of a subuid or subgid file, in file order. Comments, blank lines
 * and malformed entries are skipped, as newuidmap skips them.
 */
export function parseSubidFile(text: string): SubidEntry[] {
  const entries: SubidEntry[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const fields = line.split(":");
    if (fields.length !== 3) continue;
    const [owner, start, count] = fields as [string, string, string];
    if (owner === "" || !/^\d+$/.test(start) || !/^\d+$/.test(count)) continue;
    const entry = { owner, start: Number(start), count: Number(count) };
    if (entry.count === 0 || entry.start + entry.count - 1 > MAX_ID) continue;
    entries.push(entry);
  }
  return entries;
}

/** The ranges granted to the user `name` with `uid`, by name or by uid. */
export function rangesOf(entries: SubidEntry[], name: string, uid: number): SubidRange[] {
  return entries
    .filter((e) => e.owner === name || e.owner === String(uid))
    .map(({ start, count }) => ({ start, count }));
}

/** The entries of `file`; a missing file has none. Sync: read on every run's start. */
export function readSubidFile(file: string): SubidEntry[] {
  let text: string;
  try {
    text = Deno.readTextFileSync(file);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return [];
    throw err;
  }
  return parseSubidFile(text);
}

/** The lowest start above every entry, from 100000 (where useradd begins), for `count` ids. */
export function nextFreeRange(entries: SubidEntry[], count = 65536): SubidRange {
  const start = entries.reduce((max, e) => Math.max(max, e.start + e.count), 100000);
  return { start, count };
}
