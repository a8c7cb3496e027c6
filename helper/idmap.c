#include "idmap.h"

#include <stdio.h>
#include <string.h>

/* The length of the whitespace character (as String.prototype.trim sees it:
 * WhiteSpace and LineTerminator) at p, at most n bytes long, or 0. */
static size_t space_at(const unsigned char *p, size_t n) {
  if (n >= 1 && (p[0] == ' ' || (p[0] >= '\t' && p[0] <= '\r'))) return 1;
  if (n >= 2 && p[0] == 0xc2 && p[1] == 0xa0) return 2; /* U+00A0 */
  if (n < 3) return 0;
  unsigned cp = (unsigned)(p[0] & 0x0f) << 12 | (unsigned)(p[1] & 0x3f) << 6 | (p[2] & 0x3f);
  if ((p[0] & 0xf0) != 0xe0 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80) return 0;
  if (cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 ||
      cp == 0x202f || cp == 0x205f || cp == 0x3000 || cp == 0xfeff)
    return 3;
  return 0;
}

/* The same, for the character that ends at p + n. UTF-8 sequences resync at
 * each lead byte, so the last bytes decode alone as they decode in place. */
static size_t space_before(const unsigned char *p, size_t n) {
  for (size_t k = 1; k <= 3 && k <= n; k++)
    if (space_at(p + n - k, k) == k) return k;
  return 0;
}

/* A field of ASCII digits (any length) as a number, saturated above 2^33:
 * enough to tell what JavaScript's Number() of it compares to. */
static int digits(const char *p, size_t n, uint64_t *v) {
  if (n == 0) return 0;
  *v = 0;
  for (size_t i = 0; i < n; i++) {
    if (p[i] < '0' || p[i] > '9') return 0;
    *v = *v * 10 + (uint64_t)(p[i] - '0');
    if (*v > (1ULL << 33)) *v = 1ULL << 33;
  }
  return 1;
}

int usable_ranges(const char *text, size_t len, const char *name, uint32_t uid, uint32_t own,
                  struct range out[MAX_RANGES]) {
  char uidstr[16];
  snprintf(uidstr, sizeof uidstr, "%u", (unsigned)uid);
  struct range taken[MAX_RANGES + 1] = {{own, 1}};
  int ntaken = 1, n = 0;
  uint64_t total = 0;
  for (const char *p = text, *end = text + len; p < end && n < MAX_RANGES && total < MAX_SUBORDINATE_IDS;) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const unsigned char *line = (const unsigned char *)p;
    size_t ll = (size_t)((nl ? nl : end) - p), k;
    p = nl ? nl + 1 : end;
    while ((k = space_at(line, ll)) > 0) line += k, ll -= k;
    while ((k = space_before(line, ll)) > 0) ll -= k;
    if (ll == 0 || line[0] == '#') continue;
    const char *f = (const char *)line, *c1 = memchr(f, ':', ll);
    const char *c2 = c1 ? memchr(c1 + 1, ':', ll - (size_t)(c1 + 1 - f)) : NULL;
    if (!c2 || memchr(c2 + 1, ':', ll - (size_t)(c2 + 1 - f))) continue;
    size_t olen = (size_t)(c1 - f);
    uint64_t start, count;
    if (olen == 0 || !digits(c1 + 1, (size_t)(c2 - c1 - 1), &start) ||
        !digits(c2 + 1, ll - (size_t)(c2 + 1 - f), &count) || count == 0 ||
        start + count - 1 > 0xffffffffULL)
      continue;
    if (!((olen == strlen(name) && memcmp(f, name, olen) == 0) ||
          (olen == strlen(uidstr) && memcmp(f, uidstr, olen) == 0)))
      continue;
    int overlaps = 0;
    for (int t = 0; t < ntaken && !overlaps; t++)
      overlaps = start < taken[t].start + taken[t].count && taken[t].start < start + count;
    if (overlaps) continue;
    taken[ntaken++] = (struct range){start, count};
    if (count > MAX_SUBORDINATE_IDS - total) count = MAX_SUBORDINATE_IDS - total;
    out[n++] = (struct range){start, count};
    total += count;
  }
  return n;
}

static void add(struct idmap *m, uint64_t in, uint64_t out, uint64_t count) {
  m->inside[m->n] = in;
  m->outside[m->n] = out;
  m->count[m->n++] = count;
}

void mapping(uint32_t own, const struct range *used, int n, int root, struct idmap *m) {
  memset(m, 0, sizeof *m);
  m->subordinate = n > 0;
  if (root) {
    add(m, 0, own, 1);
    uint64_t next = 1;
    for (int i = 0; i < n; i++) {
      add(m, next, used[i].start, used[i].count);
      next += used[i].count;
    }
    return;
  }
  /* Below the caller's id: subordinate ids fill container 0..k-1; above it, the rest. */
  uint64_t below = own, next = 0;
  int placed = 0;
  for (int i = 0; i < n; i++) {
    uint64_t start = used[i].start, count = used[i].count;
    if (below > 0) {
      uint64_t k = count < below ? count : below;
      add(m, next, start, k);
      next += k;
      below -= k;
      start += k;
      count -= k;
    }
    if (count == 0) continue;
    if (!placed) {
      add(m, own, own, 1);
      placed = 1;
      next = (uint64_t)own + 1;
    }
    add(m, next, start, count);
    next += count;
  }
  if (!placed) add(m, own, own, 1);
}

int maps_outside(const struct idmap *m, uint64_t outside) {
  for (int i = 0; i < m->n; i++)
    if (outside >= m->outside[i] && outside - m->outside[i] < m->count[i]) return 1;
  return 0;
}

int maps_inside(const struct idmap *m, uint64_t inside) {
  for (int i = 0; i < m->n; i++)
    if (inside >= m->inside[i] && inside - m->inside[i] < m->count[i]) return 1;
  return 0;
}

void format_map(const struct idmap *m, char *out, int lines) {
  size_t len = 0;
  out[0] = 0;
  for (int i = 0; i < m->n; i++)
    len += (size_t)snprintf(out + len, MAP_TEXT_MAX - len, "%s%llu %llu %llu%s", i && !lines ? ", " : "",
                            (unsigned long long)m->inside[i], (unsigned long long)m->outside[i],
                            (unsigned long long)m->count[i], lines ? "\n" : "");
}
