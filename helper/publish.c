#define _GNU_SOURCE
#include "publish.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "caller.h"
#include "config.h"
#include "fail.h"
#include "paths.h"
#include "store.h"

#define SAFE_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* Every entry of the installation's lib/shoal (the bundle, its chunks, its
 * Deno): root's and not writable by group or others, as check_chain wants
 * of the directory itself. A compiled installation has no such directory. */
static void check_lib(const char *lib) {
  DIR *d = opendir(lib);
  if (!d && errno == ENOENT) return;
  if (!d) refuse("ask your admin", "cannot read \"%s\": %s", lib, ERR);
  check_chain(lib);
  for (struct dirent *e; (e = readdir(d));) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    struct stat st;
    if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) || st.st_uid != 0 || (st.st_mode & 022))
      refuse("ask your admin to reinstall shoal with install.sh",
             "\"%s/%s\" is not root's alone", lib, e->d_name);
  }
  closedir(d);
}

/* The installation and the store, checked, for an action on one digest. */
static int store_for(const char *action, const char *digest, struct config *cfg, struct store_owner *owner) {
  if (!digest_ok(digest)) usage("%s takes the manifest's digest, sha256:<64 hex digits>", action);
  load_install(cfg);
  return open_store(cfg, owner);
}

/* The caller's reference file, relative to the store. */
static void ref_name(char name[PATH_MAX], const char *digest) {
  size_t a = strcspn(digest, ":");
  fmt_path(name, "refs/%u/%.*s-%s", (unsigned)me.uid, (int)a, digest, digest + a + 1);
}

void ref(const char *digest) {
  struct config cfg = {0};
  struct store_owner owner;
  int store = store_for("ref", digest, &cfg, &owner);
  drop_to(owner.uid, owner.gid, 0, NULL);
  char image[PATH_MAX], dir[PATH_MAX], name[PATH_MAX];
  size_t a = strcspn(digest, ":");
  fmt_path(image, "images/%.*s/%s/" STORE_IMAGE_FILE, (int)a, digest, digest + a + 1);
  struct stat st;
  if (fstatat(store, image, &st, AT_SYMLINK_NOFOLLOW) || !S_ISREG(st.st_mode))
    refuse("pull the image again: it will be published", "the cluster store has no image %s", digest);
  fmt_path(dir, "refs/%u", (unsigned)me.uid);
  umask(022);
  if (mkdirat(store, "refs", 0755) && errno != EEXIST) refuse("ask your admin", "cannot make refs: %s", ERR);
  if (mkdirat(store, dir, 0755) && errno != EEXIST) refuse("ask your admin", "cannot make %s: %s", dir, ERR);
  ref_name(name, digest);
  int fd = openat(store, name, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) refuse("ask your admin", "cannot record \"%s/%s\": %s", cfg.store, name, ERR);
  close(fd);
  exit(0);
}

void unref(const char *digest) {
  struct config cfg = {0};
  struct store_owner owner;
  int store = store_for("unref", digest, &cfg, &owner);
  drop_to(owner.uid, owner.gid, 0, NULL);
  char name[PATH_MAX];
  ref_name(name, digest);
  if (unlinkat(store, name, 0) && errno != ENOENT)
    refuse("ask your admin", "cannot remove \"%s/%s\": %s", cfg.store, name, ERR);
  exit(0);
}

void publish(const char *digest) {
  struct config cfg = {0};
  struct store_owner owner;
  int store = store_for("publish", digest, &cfg, &owner);
  char converter[PATH_MAX], lib[PATH_MAX];
  fmt_path(converter, "%s/bin/shoal", cfg.prefix);
  fmt_path(lib, "%s/lib/shoal", cfg.prefix);
  check_chain(converter);
  check_lib(lib);
  if (fchdir(store)) refuse("ask your admin", "cannot enter the store \"%s\": %s", cfg.store, ERR);
  close(store);

  drop_to(owner.uid, owner.gid, 0, NULL);
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) refuse("this is a bug", "no_new_privs: %s", ERR);
  umask(022);
  /* Only the caller's standard input, output and error reach the converter. */
  if (close_range(3, ~0U, 0)) refuse("this is a bug", "close_range: %s", ERR);

  char caller[24], home[PATH_MAX + 8], user[300], logname[300];
  snprintf(caller, sizeof caller, "%u", (unsigned)me.uid);
  snprintf(home, sizeof home, "HOME=%s", owner.home);
  snprintf(user, sizeof user, "USER=%s", owner.name);
  snprintf(logname, sizeof logname, "LOGNAME=%s", owner.name);
  char *envp[] = {"PATH=" SAFE_PATH, home, user, logname, NULL};
  char *args[] = {converter, "store", "convert", (char *)digest, "--caller", caller, NULL};
  execve(converter, args, envp);
  refuse("ask your admin", "cannot run the converter \"%s\": %s", converter, ERR);
}
