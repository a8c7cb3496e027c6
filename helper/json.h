/* The strict JSON reader of the site config: exactly what shoal accepts (the
 * file decoded as UTF-8 text, then JSON.parse: RFC 8259, no extensions, a
 * leading byte order mark dropped), keeping only the values of the keys the
 * helper reads; nesting is limited to 512 levels. Pure: no I/O, no exit, no global state (tests call it through FFI). */
#ifndef SHOAL_JSON_H
#define SHOAL_JSON_H

#include <stddef.h>

enum json_key {
  K_LOCAL,
  K_CENTRAL,
  K_RUNC,
  K_RUNDIR,
  K_USERIMAGES,
  K_MAXLOOPS,
  K_TMPFS,
  K_STORE,
  K_STOREOWNER,
  NKEYS,
};

enum json_kind {
  J_ABSENT,
  J_STRING,
  J_TRUE,
  J_FALSE,
  J_NUMBER,
  J_OTHER,    /* null, an array or an object */
  J_UNUSABLE, /* a string holding a NUL or longer than JSON_VALUE_MAX - 1 bytes */
};

#define JSON_VALUE_MAX 4096

/* What JSON.parse would give for each key: the last of duplicates, and
 * nothing below a parent that a later duplicate replaced. */
struct json_values {
  enum json_kind kind[NKEYS];
  double number[NKEYS];
  char string[NKEYS][JSON_VALUE_MAX]; /* UTF-8; lone surrogates as U+FFFD */
};

/* Reads the object in text[0..len). Returns 0, or -1 when it is not one JSON
 * object: then err says why and *at is the byte offset where it went wrong. */
int json_read(const char *text, size_t len, struct json_values *out, char *err, size_t errlen,
              size_t *at);

/* The dotted name of a key ("repositories.local"). */
const char *json_key_name(enum json_key k);

#endif
