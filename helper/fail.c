#include "fail.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void fail(int code, const char *hint, const char *fmt, ...) {
  va_list ap;
  fputs("shoal-mount: error: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, " (%s)\n", hint);
  exit(code);
}

void fmt_path(char *out, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(out, PATH_MAX, fmt, ap);
  va_end(ap);
  if (n < 0 || n >= PATH_MAX) refuse("use shorter paths", "a path is longer than %d bytes", PATH_MAX - 1);
}
