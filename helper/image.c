#define _GNU_SOURCE
#include "image.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "caller.h"
#include "fail.h"
#include "paths.h"
#include "store.h"

#ifndef FUSE_SUPER_MAGIC
#define FUSE_SUPER_MAGIC 0x65735546
#endif

#define WHERE_HINT \
  "the helper mounts only REPO/images/<algorithm>-<hex>.sqsh of the centralized repository, or " \
  "of your local repository where the site allows, or STORE/images/<algorithm>/<hex>/image.sqsh " \
  "of the cluster store, named as configured"

/* Filesystems whose files say nothing true about who wrote them, or are no
 * files at all (FUSE can report any owner). */
static const unsigned long PSEUDO[] = {
    PROC_SUPER_MAGIC, SYSFS_MAGIC,  DEBUGFS_MAGIC, CGROUP_SUPER_MAGIC, CGROUP2_SUPER_MAGIC,
    SECURITYFS_MAGIC, BPF_FS_MAGIC, TRACEFS_MAGIC, DEVPTS_SUPER_MAGIC, FUSE_SUPER_MAGIC,
};

/* Opens name under dir as the caller, O_NOFOLLOW; refuses a symlink. */
static int open_below(int dir, const char *name, int flags, const char *shown) {
  become(me.uid);
  int fd = openat(dir, name, flags | O_NOFOLLOW | O_CLOEXEC);
  int err = errno;
  become(0);
  if (fd < 0 && (err == ELOOP || err == ENOTDIR))
    refuse("name the repository's own file, with no symlink on the way", "\"%s\" is a symlink", shown);
  if (fd < 0) refuse("check the path; you must be able to read it", "cannot open \"%s\": %s", shown, strerror(err));
  return fd;
}

/* The images dir of the centralized repository: the configured path checked
 * as root's (name and resolution), then images/ root-owned, not g/o-writable. */
static int central_images(const struct config *cfg) {
  char real[PATH_MAX], shown[PATH_MAX + 8];
  check_trusted("the centralized repository", cfg->central, real);
  int dir = open(real, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) refuse("ask your admin", "cannot open \"%s\": %s", cfg->central, ERR);
  snprintf(shown, sizeof shown, "%s/images", cfg->central);
  int images = open_below(dir, "images", O_PATH | O_DIRECTORY, shown);
  close(dir);
  struct stat st;
  if (fstat(images, &st) || st.st_uid != 0 || (st.st_mode & 022))
    refuse("ask your admin to make it root's, writable by root only", "\"%s\" is not root's alone", shown);
  return images;
}

/* The images dir of the caller's local repository, walked from / as the
 * caller: no symlink, every directory root's or the caller's and not g/o-
 * writable (unless root's and sticky). */
static int local_images(const struct config *cfg) {
  char path[PATH_MAX], sofar[PATH_MAX] = "";
  if (!path_canonical(cfg->local))
    refuse("ask your admin to fix repositories.local", "the local repository \"%s\" is not a canonical path", cfg->local);
  fmt_path(path, "%s/images", cfg->local);
  int fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) refuse("this is a bug", "cannot open /: %s", ERR);
  char *save = NULL;
  for (char *c = strtok_r(path, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
    strcat(strcat(sofar, "/"), c);
    int next = open_below(fd, c, O_PATH | O_DIRECTORY, sofar);
    close(fd);
    fd = next;
    struct stat st;
    const char *why = fstat(fd, &st) ? "cannot be checked" : dir_why(ABOVE_BASE, st.st_uid, st.st_mode, me.uid);
    if (why) refuse("keep your local repository on a path only you and root can change", "\"%s\" %s", sofar, why);
  }
  return fd;
}

int open_image(const struct config *cfg, const char *image) {
  if (image[0] != '/') usage("--image must be an absolute path");
  const char *name = NULL, *rel = NULL;
  int central = 0, dir;
  uid_t owner;
  const char *whose;
  if (path_canonical(image) && *cfg->store && (rel = store_image_in(image, cfg->store))) {
    /* Made by the converter from verified layers: mounted for everyone. */
    struct store_owner o;
    dir = open_store_image_dir(cfg, rel, strlen(rel) - strlen(STORE_IMAGE_FILE) - 1, &o);
    name = STORE_IMAGE_FILE;
    owner = o.uid;
    whose = "ask your admin: the store's images are its owner's";
  } else {
    if (path_canonical(image) && *cfg->central && (name = image_name_in(image, cfg->central))) central = 1;
    else if (path_canonical(image)) name = image_name_in(image, cfg->local);
    if (!name) refuse(WHERE_HINT, "\"%s\" is not an image file of the image repositories", image);
    if (!central && !cfg->user_images)
      refuse("this site lets the helper kernel-mount only the centralized repository's images "
             "(helper.kernelMountUserImages); shoal mounts yours with squashfuse",
             "image \"%s\" is in your local repository", image);
    dir = central ? central_images(cfg) : local_images(cfg);
    owner = central ? 0 : me.uid;
    whose = central ? "ask your admin: the centralized repository's images are root's"
                    : "your local repository's images must be yours";
  }
  int fd = open_below(dir, name, O_RDONLY | O_NONBLOCK | O_NOCTTY, image);
  close(dir);

  struct stat st;
  struct statfs sf;
  if (fstat(fd, &st) || fstatfs(fd, &sf)) refuse("this is a bug", "cannot stat \"%s\": %s", image, ERR);
  if (!S_ISREG(st.st_mode)) refuse("name a squashfs image file", "\"%s\" is not a regular file", image);
  for (size_t i = 0; i < sizeof PSEUDO / sizeof PSEUDO[0]; i++)
    if ((unsigned long)sf.f_type == PSEUDO[i])
      refuse("keep images on a local or network filesystem", "\"%s\" is on a pseudo or FUSE filesystem", image);
  if (st.st_uid != owner) refuse(whose, "image \"%s\" belongs to uid %u", image, (unsigned)st.st_uid);
  if (st.st_mode & 022) refuse(whose, "image \"%s\" is writable by group or others", image);
  if (st.st_size == 0) refuse("pull the image again", "\"%s\" is empty", image);

  unsigned char sb[96];
  if (pread(fd, sb, sizeof sb, 0) != (ssize_t)sizeof sb || memcmp(sb, "hsqs", 4) ||
      (sb[28] | sb[29] << 8) != 4)
    refuse("name a squashfs image (shoal's repositories hold them)",
           "\"%s\" is not a squashfs 4 image", image);
  uint64_t used = 0;
  for (int i = 7; i >= 0; i--) used = used << 8 | sb[40 + i];
  if (used > (uint64_t)st.st_size)
    refuse("the file is truncated: pull the image again", "\"%s\" is shorter than its superblock says", image);
  return fd;
}
