#include "paths.h"

#include <string.h>

int path_inside(const char *path, const char *dir) {
  size_t n = strlen(dir);
  if (strcmp(dir, "/") == 0) return path[0] == '/' && path[1] != 0;
  return strncmp(path, dir, n) == 0 && path[n] == '/';
}

int path_canonical(const char *path) {
  if (path[0] != '/') return 0;
  if (path[1] == 0) return 1;
  for (const char *c = path + 1;;) {
    size_t n = strcspn(c, "/");
    if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.')) return 0;
    if (c[n] == 0) return 1;
    c += n + 1;
  }
}
