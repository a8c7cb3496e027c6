#define _GNU_SOURCE
#include "bundle.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "caller.h"
#include "fail.h"
#include "paths.h"

int own_entry(int dirfd, const char *bundle, const char *name, int want_dir) {
  become(me.uid);
  int r = want_dir ? mkdirat(dirfd, name, 0700)
                   : openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (r >= 0 && !want_dir) close(r);
  if (r < 0 && errno != EEXIST) refuse("check the bundle dir", "cannot create \"%s/%s\": %s", bundle, name, ERR);
  int fd = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  become(0);
  struct stat st;
  if (fd < 0 || fstat(fd, &st)) refuse("check the bundle dir", "cannot open \"%s/%s\": %s", bundle, name, ERR);
  if (S_ISLNK(st.st_mode) || (want_dir ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode)) || st.st_uid != me.uid)
    refuse("remove it; the helper creates it", "\"%s/%s\" is not a %s of yours", bundle, name,
           want_dir ? "directory" : "file");
  return fd;
}

static void judge(enum dir_role role, const char *path, const struct stat *st) {
  const char *why = dir_why(role, st->st_uid, st->st_mode, me.uid);
  if (!why) return;
  if (role == BUNDLE) refuse("shoal creates it: a directory of yours, mode 0700", "bundle \"%s\" %s", path, why);
  if (role == BASE)
    refuse("shoal makes the run dir: a directory of yours, mode 0700 (see the run dir rule)",
           "\"%s\", the bundle's run dir, %s", path, why);
  refuse("pass the bundle's real path, in a run dir of yours", "\"%s\" on the bundle path %s", path, why);
}

int open_bundle(const struct config *cfg, const char *bundle) {
  if (!path_canonical(bundle))
    usage("--bundle must be an absolute path without '.', '..' or '//' (resolve symlinks first)");
  const char *why = bundle_path_why(bundle, cfg->rundir);
  if (why)
    refuse("shoal puts bundles there; see the run dir rule in the helper's documentation",
           "bundle \"%s\": %s%s%s", bundle, why, *cfg->rundir ? " " : "", cfg->rundir);

  char path[PATH_MAX];
  fmt_path(path, "%s", bundle);
  size_t base = (size_t)(strrchr(bundle, '/') - bundle);
  become(me.uid);
  int fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st)) refuse("this is a bug", "cannot open /: %s", ERR);
  judge(base == 0 ? BASE : ABOVE_BASE, "/", &st);
  char *save = NULL, sofar[PATH_MAX] = "";
  for (char *c = strtok_r(path, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
    int next = openat(fd, c, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    close(fd);
    fd = next;
    strcat(strcat(sofar, "/"), c);
    if (fd < 0 || fstat(fd, &st)) refuse("check the path", "cannot open \"%s\": %s", sofar, ERR);
    size_t len = strlen(sofar);
    judge(len == strlen(bundle) ? BUNDLE : len == base ? BASE : ABOVE_BASE, sofar, &st);
  }
  become(0);
  return fd;
}
