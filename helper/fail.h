/* Refusals: one line on stderr, `shoal-mount: error: WHAT (HINT)`, then exit. */
#ifndef SHOAL_FAIL_H
#define SHOAL_FAIL_H

#include <errno.h>
#include <string.h>

#define USAGE \
  "usage: shoal-mount run --image FILE --bundle DIR [--root] [--userns] [--tmpfs-size SIZE] -- " \
  "RUNC_ARGS..."

void fail(int code, const char *hint, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));
#define refuse(...) fail(1, __VA_ARGS__)
#define usage(...) fail(2, USAGE, __VA_ARGS__)
#define ERR strerror(errno)

/* snprintf into a PATH_MAX buffer, refusing rather than truncating a path. */
void fmt_path(char *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
