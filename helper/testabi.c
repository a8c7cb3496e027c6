/* What FFI cannot do itself with the pure units' structs: their sizes and
 * fields. Built into libshoalhelper-test.so only. */
#include "json.h"

size_t shoal_json_values_size(void) { return sizeof(struct json_values); }
int shoal_json_nkeys(void) { return NKEYS; }
int shoal_json_kind(const struct json_values *v, int k) { return (int)v->kind[k]; }
double shoal_json_number(const struct json_values *v, int k) { return v->number[k]; }
const char *shoal_json_string(const struct json_values *v, int k) { return v->string[k]; }
