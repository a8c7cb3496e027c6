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

int open_bundle(const struct config *cfg, const char *bundle) {
  if (!path_canonical(bundle))
    usage("--bundle must be an absolute path without '.', '..' or '//' (resolve symlinks first)");
  char rundir[PATH_MAX];
  become(me.uid);
  int ok = realpath(cfg->rundir, rundir) != NULL;
  become(0);
  if (!ok || !path_inside(bundle, rundir))
    refuse("shoal puts bundles there; see the run dir rule in the helper's documentation",
           "bundle \"%s\" is not below the run dir %s", bundle, cfg->rundir);

  char path[PATH_MAX];
  fmt_path(path, "%s", bundle);
  become(me.uid);
  int fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
  char *save = NULL, sofar[PATH_MAX] = "";
  for (char *c = strtok_r(path, "/", &save); c && fd >= 0; c = strtok_r(NULL, "/", &save)) {
    int next = openat(fd, c, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    close(fd);
    fd = next;
    strcat(strcat(sofar, "/"), c);
    struct stat st;
    if (fd < 0 || fstat(fd, &st)) refuse("check the path", "cannot open \"%s\": %s", sofar, ERR);
    if (S_ISLNK(st.st_mode))
      refuse("pass the bundle's real path", "\"%s\" on the bundle path is a symlink", sofar);
    if (!S_ISDIR(st.st_mode)) refuse("check the path", "\"%s\" is not a directory", sofar);
    int last = strcmp(sofar, bundle) == 0;
    if (last && (st.st_uid != me.uid || (st.st_mode & 07777) != 0700))
      refuse("shoal creates it: a directory of yours, mode 0700",
             "bundle \"%s\" must be owned by you with mode 0700", bundle);
    if (!last && strlen(sofar) >= strlen(rundir) &&
        ((st.st_uid != me.uid && st.st_uid != 0) || (st.st_mode & 022)))
      refuse("it must be yours or root's, not writable by group or others",
             "\"%s\" on the bundle path is not safe", sofar);
  }
  become(0);
  return fd;
}
