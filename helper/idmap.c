#include "idmap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct range subrange(const char *text, size_t len, const char *name, unsigned long uid) {
  struct range r = {0, 0};
  char uidstr[24], line[512];
  snprintf(uidstr, sizeof uidstr, "%lu", uid);
  for (const char *p = text, *end = text + len; p < end;) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t n = (size_t)((nl ? nl : end) - p);
    const char *next = nl ? nl + 1 : end;
    if (n >= sizeof line) {
      p = next;
      continue;
    }
    memcpy(line, p, n);
    line[n] = 0;
    p = next;
    char *save = NULL;
    char *owner = strtok_r(line, ":", &save), *start = strtok_r(NULL, ":", &save),
         *count = strtok_r(NULL, ":", &save);
    if (!owner || !count || strtok_r(NULL, "", &save) || (strcmp(owner, name) && strcmp(owner, uidstr)))
      continue;
    if (strspn(start, "0123456789") != strlen(start) || strspn(count, "0123456789") != strlen(count) ||
        strlen(start) > 10 || strlen(count) > 10)
      continue;
    unsigned long s = strtoul(start, NULL, 10), c = strtoul(count, NULL, 10);
    if (c == 0 || s + c - 1 > 0xffffffffUL) continue;
    r.start = s;
    r.count = c;
    break;
  }
  return r;
}

static void add(struct idmap *m, unsigned long in, unsigned long out, unsigned long count) {
  m->inside[m->n] = in;
  m->outside[m->n] = out;
  m->count[m->n++] = count;
}

struct idmap mapping(unsigned long id, struct range r, int root) {
  struct idmap m = {0};
  if (root) {
    add(&m, 0, id, 1);
    if (r.count) add(&m, 1, r.start, r.count);
  } else if (!r.count) {
    add(&m, id, id, 1);
  } else {
    if (id) add(&m, 0, r.start, id < r.count ? id : r.count);
    add(&m, id, id, 1);
    if (id < r.count) add(&m, id + 1, r.start + id, r.count - id);
  }
  return m;
}

void format_map(const struct idmap *m, char *out, size_t n, int lines) {
  size_t len = 0;
  out[0] = 0;
  for (int i = 0; i < m->n && len < n; i++)
    len += (size_t)snprintf(out + len, n - len, "%s%lu %lu %lu%s", i && !lines ? ", " : "",
                            m->inside[i], m->outside[i], m->count[i], lines ? "\n" : "");
}
