/* What FFI cannot do itself with the pure units' structs: their sizes and
 * fields. Built into libshoalhelper-test.so only. */
#include "idmap.h"
#include "json.h"

size_t shoal_json_values_size(void) { return sizeof(struct json_values); }
int shoal_json_nkeys(void) { return NKEYS; }
int shoal_json_kind(const struct json_values *v, int k) { return (int)v->kind[k]; }
double shoal_json_number(const struct json_values *v, int k) { return v->number[k]; }
const char *shoal_json_string(const struct json_values *v, int k) { return v->string[k]; }

/* The map of caller id own from a subuid/subgid file's text, as shoal-mount
 * computes it: extents as (inside, outside, count) triples in out (room for
 * MAX_EXTENTS); returns how many. */
int shoal_idmap(const char *text, size_t len, const char *name, uint32_t uid, uint32_t own,
                int root, uint64_t *out) {
  struct range r[MAX_RANGES];
  struct idmap m;
  mapping(own, r, usable_ranges(text, len, name, uid, own, r), root, &m);
  for (int i = 0; i < m.n; i++) {
    out[3 * i] = m.inside[i];
    out[3 * i + 1] = m.outside[i];
    out[3 * i + 2] = m.count[i];
  }
  return m.n;
}

int shoal_max_extents(void) { return MAX_EXTENTS; }
