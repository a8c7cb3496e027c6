/**
 * The container's uid and gid mappings, derived from the caller's id and
 * subordinate ranges (/etc/subuid, /etc/subgid). This header is the one rule:
 * the setuid helper derives the identical mapping in C from the same files
 * (helper/idmap.c; helper/idmap.h lists the same steps), and
 * tests/helper_units_test.ts runs both on a table of layouts and requires
 * identical maps. It is applied once to uids (caller uid, subuid ranges) and
 * once to gids (caller's primary gid, subgid ranges), entries matched by the
 * user's name or uid in both files (mod/sys/subid.ts reads them):
 *
 * 1. Ranges: the caller's entries in file order, matched by user name or by
 *    numeric uid (as newuidmap does). An entry whose ids overlap the caller's own
 *    id, or any id of an entry already taken, is skipped whole (the kernel
 *    rejects overlapping host ids). At most MAX_RANGES entries are taken, and
 *    the concatenation is cut at MAX_SUBORDINATE_IDS ids in total (the last
 *    taken entry is shortened). N is the number of ids taken.
 * 2. `--root` (caller id c): container 0 -> c (size 1); container 1..N -> the
 *    taken ids in order, one extent per taken entry.
 * 3. Default, keep-id as podman's: k = min(c, N). Container 0..k-1 -> the first
 *    k taken ids; container c -> c; container c+1..c+(N-k) -> the remaining
 *    taken ids. Image files owned by root (0) thus stay owned by root inside,
 *    and the caller keeps their own id.
 * 4. Without any range (N = 0): `--root` maps container 0 -> c, keep-id maps
 *    c -> c, both of size 1; `subordinate` is false so the CLI can warn that
 *    package managers (which chown files to other ids) may fail.
 *
 * Extents are listed in container-id order; adjacent extents are not merged.
 */
import type { SubidRange } from "../sys/subid.ts";

export interface IdMapping {
  containerID: number;
  hostID: number;
  size: number;
}

/** Enough for every id images use (0..65535, with nobody/nogroup at 65534). */
export const MAX_SUBORDINATE_IDS = 65536;
/**
 * The kernel takes at most 340 extents per map; keep-id splits one range in two
 * and adds the caller's own, so this leaves ample room.
 */
export const MAX_RANGES = 64;

export interface IdMap {
  mappings: IdMapping[];
  /** Whether any subordinate id was mapped (false: a single-id mapping). */
  subordinate: boolean;
}

/** The subordinate ranges actually used for caller id `own` (rule 1). */
export function usableRanges(own: number, ranges: SubidRange[]): SubidRange[] {
  const taken: SubidRange[] = [{ start: own, count: 1 }];
  const used: SubidRange[] = [];
  let total = 0;
  for (const r of ranges) {
    if (used.length === MAX_RANGES || total === MAX_SUBORDINATE_IDS) break;
    if (taken.some((t) => r.start < t.start + t.count && t.start < r.start + r.count)) continue;
    const count = Math.min(r.count, MAX_SUBORDINATE_IDS - total);
    taken.push(r);
    used.push({ start: r.start, count });
    total += count;
  }
  return used;
}

/** The mapping for caller id `own` with subordinate `ranges` (rules 2 to 4). */
export function idMap(own: number, ranges: SubidRange[], root: boolean): IdMap {
  const used = usableRanges(own, ranges);
  const mappings: IdMapping[] = [];
  if (root) {
    mappings.push({ containerID: 0, hostID: own, size: 1 });
    let next = 1;
    for (const r of used) {
      mappings.push({ containerID: next, hostID: r.start, size: r.count });
      next += r.count;
    }
    return { mappings, subordinate: used.length > 0 };
  }
  // Below the caller's id: subordinate ids fill container 0..k-1; above it, the rest.
  let below = own;
  let next = 0;
  let callerPlaced = false;
  for (const r of used) {
    let start = r.start;
    let count = r.count;
    if (below > 0) {
      const n = Math.min(count, below);
      mappings.push({ containerID: next, hostID: start, size: n });
      next += n;
      below -= n;
      start += n;
      count -= n;
    }
    if (count === 0) continue;
    if (!callerPlaced) {
      mappings.push({ containerID: own, hostID: own, size: 1 });
      callerPlaced = true;
      next = own + 1;
    }
    mappings.push({ containerID: next, hostID: start, size: count });
    next += count;
  }
  if (!callerPlaced) mappings.push({ containerID: own, hostID: own, size: 1 });
  return { mappings, subordinate: used.length > 0 };
}

/** The container id that host id `hostId` appears as, or undefined when it is not mapped. */
export function containerIdOf(mappings: IdMapping[], hostId: number): number | undefined {
  for (const m of mappings) {
    if (hostId >= m.hostID && hostId < m.hostID + m.size) return m.containerID + hostId - m.hostID;
  }
  return undefined;
}
