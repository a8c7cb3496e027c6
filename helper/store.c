#define _GNU_SOURCE
#include "store.h"

#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "caller.h"
#include "fail.h"

#define STORE_HINT "ask your admin: the store and its files must be the store owner's, the directories above it root's"

/* Opens name under dir (O_PATH, no symlink) and checks its owner and mode. */
static int level(int dir, const char *name, uid_t owner, const char *shown) {
  int fd = openat(dir, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0 && (errno == ELOOP || errno == ENOTDIR))
    refuse(STORE_HINT, "\"%s\" is a symlink or not a directory", shown);
  if (fd < 0) refuse("pull the image again, or ask your admin", "cannot open \"%s\": %s", shown, ERR);
  struct stat st;
  if (fstat(fd, &st)) refuse("this is a bug", "cannot stat \"%s\": %s", shown, ERR);
  if (st.st_uid != owner || (st.st_mode & 022))
    refuse(STORE_HINT, "\"%s\" is not %s alone", shown, owner == 0 ? "root's" : "the store owner's");
  return fd;
}

int open_store(const struct config *cfg, struct store_owner *o) {
  if (!*cfg->store) refuse("ask your admin to set store.path", "this site has no cluster store");
  errno = 0;
  struct passwd *pw = getpwnam(cfg->store_owner);
  if (!pw) refuse("ask your admin to create it on every node", "the store owner '%s' is not in the user database", cfg->store_owner);
  if (pw->pw_uid == 0) refuse("ask your admin to give the store an account of its own", "the store owner must not be root");
  o->uid = pw->pw_uid;
  o->gid = pw->pw_gid;
  snprintf(o->name, sizeof o->name, "%s", pw->pw_name);
  fmt_path(o->home, "%s", pw->pw_dir[0] == '/' ? pw->pw_dir : "/");

  char path[PATH_MAX], sofar[PATH_MAX] = "";
  fmt_path(path, "%s", cfg->store);
  int fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) refuse("this is a bug", "cannot open /: %s", ERR);
  char *save = NULL, *next;
  for (char *c = strtok_r(path, "/", &save); c; c = next) {
    next = strtok_r(NULL, "/", &save);
    strcat(strcat(sofar, "/"), c);
    int sub = level(fd, c, next ? 0 : o->uid, sofar);
    close(fd);
    fd = sub;
  }
  return fd;
}

int open_store_image_dir(const struct config *cfg, const char *rel, size_t rel_len,
                         struct store_owner *o) {
  int dir = open_store(cfg, o);
  char parts[3][160], shown[PATH_MAX];
  size_t a = strcspn(rel, "/");
  if (a >= sizeof parts[1] || rel_len - a - 1 >= sizeof parts[2]) refuse("this is a bug", "store path too long");
  snprintf(parts[0], sizeof parts[0], "images");
  snprintf(parts[1], sizeof parts[1], "%.*s", (int)a, rel);
  snprintf(parts[2], sizeof parts[2], "%.*s", (int)(rel_len - a - 1), rel + a + 1);
  fmt_path(shown, "%s", cfg->store);
  become(me.uid);
  for (int i = 0; i < 3; i++) {
    size_t n = strlen(shown);
    if (snprintf(shown + n, sizeof shown - n, "/%s", parts[i]) >= (int)(sizeof shown - n))
      refuse("ask your admin to use a shorter store.path", "the store path is too long");
    int sub = level(dir, parts[i], o->uid, shown);
    close(dir);
    dir = sub;
  }
  become(0);
  return dir;
}
