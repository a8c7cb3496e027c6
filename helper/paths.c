#include "paths.h"

#include <string.h>
#include <sys/stat.h>

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

/* ^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$ */
static int name_ok(const char *name) {
  size_t n = strlen(name);
  if (n == 0 || n > 128) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = name[i];
    int alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!alnum && (i == 0 || (c != '_' && c != '.' && c != '-'))) return 0;
  }
  return 1;
}

const char *bundle_path_why(const char *bundle, const char *rundir) {
  const char *name = strrchr(bundle, '/');
  if (!name || !name_ok(name + 1))
    return "its name must be 1 to 128 letters, digits, '_', '.' or '-', starting with a letter or digit";
  size_t base = name == bundle ? 1 : (size_t)(name - bundle);
  if (*rundir && (strlen(rundir) != base || strncmp(bundle, rundir, base) != 0))
    return "it is not directly in the run dir the site config sets";
  return NULL;
}

const char *dir_why(enum dir_role role, uint32_t uid, uint32_t mode, uint32_t caller) {
  if (S_ISLNK(mode)) return "is a symlink";
  if (!S_ISDIR(mode)) return "is not a directory";
  if (role == ABOVE_BASE) {
    if (uid != 0 && uid != caller) return "must be owned by root or you";
    if ((mode & 022) && !((mode & S_ISVTX) && uid == 0))
      return "must not be writable by group or others unless root's with the sticky bit (like /tmp)";
    return NULL;
  }
  if (uid != caller || (mode & 07777) != 0700) return "must be owned by you with mode 0700";
  return NULL;
}

const char *bundle_why(const char *bundle, const char *rundir, uint32_t caller, const uint32_t *uids,
                       const uint32_t *modes, int n, int *bad) {
  *bad = -1;
  if (!path_canonical(bundle)) return "not an absolute path without '.', '..' or '//'";
  const char *why = bundle_path_why(bundle, rundir);
  if (why) return why;
  int parts = 1;
  for (const char *p = bundle + 1; *p; p++) parts += *p == '/';
  if (n != parts + 1) return "one fact per component is needed";
  for (int i = 0; i < n; i++) {
    enum dir_role role = i == n - 1 ? BUNDLE : i == n - 2 ? BASE : ABOVE_BASE;
    if ((why = dir_why(role, uids[i], modes[i], caller))) {
      *bad = i;
      return why;
    }
  }
  return NULL;
}

static int hex_run(const char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f'))) return 0;
  return 1;
}

/* The hex digits each algorithm's digest has. */
static size_t hex_digits(const char *algorithm, size_t n) {
  if (n == 6 && strncmp(algorithm, "sha256", 6) == 0) return 64;
  if (n == 6 && strncmp(algorithm, "sha384", 6) == 0) return 96;
  if (n == 6 && strncmp(algorithm, "sha512", 6) == 0) return 128;
  return 0;
}

int digest_ok(const char *digest) {
  size_t a = strcspn(digest, ":"), hex = hex_digits(digest, a);
  return hex && digest[a] == ':' && strlen(digest + a + 1) == hex && hex_run(digest + a + 1, hex);
}

const char *store_image_in(const char *image, const char *store) {
  size_t r = strlen(store);
  if (r == 0 || strncmp(image, store, r) != 0 || strncmp(image + r, "/images/", 8) != 0) return NULL;
  const char *rel = image + r + 8;
  size_t a = strcspn(rel, "/"), hex = hex_digits(rel, a);
  if (!hex || rel[a] != '/' || !hex_run(rel + a + 1, hex) || strcmp(rel + a + 1 + hex, "/" STORE_IMAGE_FILE) != 0)
    return NULL;
  return rel;
}

const char *image_name_in(const char *image, const char *repo) {
  size_t r = strlen(repo);
  if (r == 0 || strncmp(image, repo, r) != 0 || strncmp(image + r, "/images/", 8) != 0) return NULL;
  const char *name = image + r + 8;
  size_t n = strlen(name);
  if (n == 7 + 64 + 5 && strncmp(name, "sha256-", 7) == 0 && hex_run(name + 7, 64) &&
      strcmp(name + 7 + 64, ".sqsh") == 0)
    return name;
  if (n == 7 + 128 + 5 && strncmp(name, "sha512-", 7) == 0 && hex_run(name + 7, 128) &&
      strcmp(name + 7 + 128, ".sqsh") == 0)
    return name;
  return NULL;
}
