/* The container's id mappings from /etc/subuid and /etc/subgid. Pure: tests
 * call it through FFI. */
#ifndef SHOAL_IDMAP_H
#define SHOAL_IDMAP_H

#include <stddef.h>

struct range { unsigned long start, count; };
struct idmap { int n; unsigned long inside[3], outside[3], count[3]; };

/* The first range in a subuid/subgid file's text owned by name or by uid
 * (decimal); count 0 when there is none. */
struct range subrange(const char *text, size_t len, const char *name, unsigned long uid);

/* The mapping of caller id (uid or gid) with range r, --root or not (the rule
 * in main.c's header). */
struct idmap mapping(unsigned long id, struct range r, int root);

/* As /proc/PID/uid_map wants it (lines: "inside outside count"), or joined by ", ". */
void format_map(const struct idmap *m, char *out, size_t n, int lines);

#endif
