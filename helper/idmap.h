/* The container's id mappings from /etc/subuid and /etc/subgid. Pure: tests
 * call it through FFI (tests/idmap_rule_test.ts holds it to the TypeScript).
 *
 * The one rule is written out in mod/runtime/idmap.ts's header (and
 * mod/sys/subid.ts for reading the files); this is the same rule, step by
 * step, and must stay so:
 *   - Lines: the file split at '\n'; each trimmed of the whitespace that
 *     JavaScript's String.prototype.trim removes (ASCII and Unicode spaces,
 *     as UTF-8); empty lines and those starting with '#' skipped; exactly 3
 *     ':'-separated fields, owner non-empty, start and count ASCII digits
 *     only (any length), count > 0, start + count - 1 <= 2^32 - 1.
 *   - Entries of the caller: owner equal to the user name or to the decimal
 *     uid (for /etc/subgid too, as newgidmap does), in file order.
 *   - Taken: an entry overlapping the caller's own id (uid or gid) or any
 *     entry taken before is skipped whole; at most MAX_RANGES entries, cut at
 *     MAX_SUBORDINATE_IDS ids in total (the last one shortened).
 *   - Map, --root: 0 -> own (1), then 1.. -> the taken ids, one extent each.
 *     Default (keep-id): container 0..k-1 -> the first k = min(own, N) taken
 *     ids, own -> own (1), own+1.. -> the rest; extents in container order,
 *     never merged. Without any taken id: 0 -> own (1) with --root, own ->
 *     own (1) without. */
#ifndef SHOAL_IDMAP_H
#define SHOAL_IDMAP_H

#include <stddef.h>
#include <stdint.h>

#define MAX_RANGES 64
#define MAX_SUBORDINATE_IDS 65536
/* keep-id splits one range in two and adds the caller's own id */
#define MAX_EXTENTS (MAX_RANGES + 2)

struct range {
  uint64_t start, count;
};

struct idmap {
  int n;
  int subordinate; /* whether any subordinate id is mapped */
  uint64_t inside[MAX_EXTENTS], outside[MAX_EXTENTS], count[MAX_EXTENTS];
};

/* The ranges taken for caller id own from a subuid/subgid file's text (len
 * bytes, any content), the owner being name or the decimal uid; returns how
 * many (at most MAX_RANGES) are in out. */
int usable_ranges(const char *text, size_t len, const char *name, uint32_t uid, uint32_t own,
                  struct range out[MAX_RANGES]);

/* The mapping of caller id own with the taken ranges, --root or not. */
void mapping(uint32_t own, const struct range *used, int n, int root, struct idmap *m);

/* Whether host id `outside` is one that m maps (the outside of an extent). */
int maps_outside(const struct idmap *m, uint64_t outside);

/* Whether container id `inside` is one that m maps. */
int maps_inside(const struct idmap *m, uint64_t inside);

/* As /proc/PID/uid_map wants it (lines: "inside outside count"), or joined
 * by ", "; out must hold MAP_TEXT_MAX bytes. */
#define MAP_TEXT_MAX (MAX_EXTENTS * 40)
void format_map(const struct idmap *m, char *out, int lines);

#endif
