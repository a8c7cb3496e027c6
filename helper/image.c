#define _GNU_SOURCE
#include "image.h"

#include <fcntl.h>
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

#define FUSE_MAGIC 0x65735546

int open_image(const struct config *cfg, const char *image) {
  if (image[0] != '/') usage("--image must be an absolute path");
  become(me.uid);
  int fd = open(image, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  int err = errno;
  char local[PATH_MAX], central[PATH_MAX];
  int has_local = realpath(cfg->local, local) != NULL;
  int has_central = *cfg->central && realpath(cfg->central, central) != NULL;
  become(0);
  if (fd < 0 && err == ELOOP)
    refuse("name the image file itself, not a symlink to it", "\"%s\" is a symlink", image);
  if (fd < 0) refuse("check the path; you must be able to read it", "cannot open \"%s\": %s", image, strerror(err));

  struct stat st;
  struct statfs sf;
  if (fstat(fd, &st) || fstatfs(fd, &sf)) refuse("this is a bug", "cannot stat \"%s\": %s", image, ERR);
  if (!S_ISREG(st.st_mode)) refuse("name a squashfs image file", "\"%s\" is not a regular file", image);
  if ((unsigned long)sf.f_type == FUSE_MAGIC)
    refuse("FUSE filesystems can report any owner: keep images on a local or network filesystem",
           "\"%s\" is on a FUSE filesystem", image);

  char self[64], real[PATH_MAX];
  snprintf(self, sizeof self, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(self, real, sizeof real - 1);
  if (n < 0) refuse("this is a bug", "cannot name the open image: %s", ERR);
  real[n] = 0;
  if (!(has_local && path_inside(real, local)) && !(has_central && path_inside(real, central)))
    refuse("the helper mounts only images in the centralized repository or in your local "
           "repository, as configured in the site config",
           "\"%s\" is outside the image repositories", image);

  if (st.st_uid == 0) {
    if (st.st_mode & 022)
      refuse("ask your admin to make it writable by root only",
             "image \"%s\" is writable by group or others", image);
  } else if (st.st_uid != me.uid) {
    refuse("use an image of your own or one of root's", "image \"%s\" belongs to uid %u", image,
           (unsigned)st.st_uid);
  } else if (!cfg->user_images) {
    refuse("this site lets the helper kernel-mount only root's images (helper.kernelMountUserImages); "
           "shoal mounts yours with squashfuse",
           "image \"%s\" is owned by you", image);
  }

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
