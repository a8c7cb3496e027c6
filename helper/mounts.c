#define _GNU_SOURCE
#include "mounts.h"

#include <fcntl.h>
#include <linux/mount.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fail.h"
#include "loop.h"

static int sys_fsopen(const char *fs) { return (int)syscall(SYS_fsopen, fs, FSOPEN_CLOEXEC); }
static int sys_fsconfig(int fd, unsigned cmd, const char *key, const void *val, int aux) {
  return (int)syscall(SYS_fsconfig, fd, cmd, key, val, aux);
}
static int sys_fsmount(int fd, unsigned attrs) {
  return (int)syscall(SYS_fsmount, fd, FSMOUNT_CLOEXEC, attrs);
}
static int sys_move_mount(int from, const char *fpath, int to, const char *tpath, unsigned flags) {
  return (int)syscall(SYS_move_mount, from, fpath, to, tpath, flags);
}

/* The kernel's own words on why an fsconfig failed, from the context fd. */
static const char *fs_reason(int fs) {
  static char msg[256];
  int saved = errno;
  ssize_t n = read(fs, msg, sizeof msg - 1);
  if (n <= 2) return strerror(saved);
  msg[n] = 0;
  msg[strcspn(msg, "\n")] = 0;
  return msg + 2; /* "e " */
}

/* A new filesystem, mounted detached: returns the mount fd. opts: key=value pairs, NULL-ended. */
static int new_mount(const char *type, const char *source, const char *const *opts, unsigned attrs,
                     const char *what, const char *hint) {
  int fs = sys_fsopen(type);
  if (fs < 0) refuse(hint, "%s: the kernel has no %s filesystem: %s", what, type, ERR);
  if (source && sys_fsconfig(fs, FSCONFIG_SET_STRING, "source", source, 0))
    refuse(hint, "%s: %s", what, fs_reason(fs));
  for (; opts && *opts; opts += 2) {
    int r = opts[1] ? sys_fsconfig(fs, FSCONFIG_SET_STRING, opts[0], opts[1], 0)
                    : sys_fsconfig(fs, FSCONFIG_SET_FLAG, opts[0], NULL, 0);
    if (r) refuse(hint, "%s: option %s: %s", what, opts[0], fs_reason(fs));
  }
  if (sys_fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0)) refuse(hint, "%s: %s", what, fs_reason(fs));
  int m = sys_fsmount(fs, attrs);
  if (m < 0) refuse(hint, "%s: %s", what, ERR);
  close(fs);
  return m;
}

static void attach(int mnt, int dirfd, const char *name, const char *what) {
  unsigned flags = MOVE_MOUNT_F_EMPTY_PATH | (*name ? 0 : MOVE_MOUNT_T_EMPTY_PATH);
  if (sys_move_mount(mnt, "", dirfd, name, flags))
    refuse("this is a bug, or the kernel is too old", "cannot attach %s: %s", what, ERR);
}

void mount_container(int img, const char *image, const char *size, int max_loops, int ns, int rootfs,
                     int mnt, int nsfile) {
  const char *tmpfs_opts[] = {"mode", "0700", "uid", "0", "gid", "0", "size", size, NULL};
  int tmp = new_mount("tmpfs", "shoal", tmpfs_opts, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
                      "tmpfs", "this is a bug");
  attach(tmp, mnt, "", "the tmpfs");

  char dev[64];
  int loop = loop_attach(img, image, max_loops, dev);
  const char *sq_opts[] = {"ro", NULL, NULL};
  int sq = new_mount("squashfs", dev, sq_opts,
                     MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
                     "the kernel cannot mount the image", "the image is corrupt: pull it again");
  struct stat ls, ms;
  if (fstat(loop, &ls) || fstat(sq, &ms) || ls.st_rdev != ms.st_dev)
    refuse("this is a bug", "the mounted filesystem is not on %s", dev);
  close(loop); /* the mount holds the device; autoclear frees it with the mount */
  close(img);

  struct mount_attr attr = {.attr_set = MOUNT_ATTR_IDMAP, .userns_fd = (uint64_t)ns};
  if (syscall(SYS_mount_setattr, sq, "", AT_EMPTY_PATH, &attr, sizeof attr))
    refuse("the helper needs idmapped squashfs mounts (a recent kernel); shoal can run without it",
           "cannot idmap the image mount: %s", ERR);
  if (mkdirat(tmp, "lower", 0700) || mkdirat(tmp, "upper", 0700) || mkdirat(tmp, "work", 0700))
    refuse("this is a bug", "cannot populate the tmpfs: %s", ERR);
  attach(sq, tmp, "lower", "the image");

  /* The container's / looks like the image's own. */
  int upper = openat(tmp, "upper", O_PATH | O_NOFOLLOW | O_CLOEXEC | O_DIRECTORY);
  int work = openat(tmp, "work", O_PATH | O_NOFOLLOW | O_CLOEXEC | O_DIRECTORY);
  if (upper < 0 || work < 0 || fstat(sq, &ms) ||
      fchownat(upper, "", ms.st_uid, ms.st_gid, AT_EMPTY_PATH) ||
      fchmodat(tmp, "upper", ms.st_mode & 07777, 0))
    refuse("this is a bug", "cannot prepare the overlay: %s", ERR);
  char lowerdir[64], upperdir[64], workdir[64];
  snprintf(lowerdir, sizeof lowerdir, "/proc/self/fd/%d", sq);
  snprintf(upperdir, sizeof upperdir, "/proc/self/fd/%d", upper);
  snprintf(workdir, sizeof workdir, "/proc/self/fd/%d", work);
  const char *ovl_opts[] = {"lowerdir", lowerdir, "upperdir", upperdir, "workdir", workdir, NULL};
  /* nosuid: a setuid file written in the writable layer must not grant its ids either. */
  int ovl = new_mount("overlay", "shoal", ovl_opts, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, "overlay",
                      "the helper needs overlayfs over idmapped layers (Linux 5.19)");
  attach(ovl, rootfs, "", "the overlay");

  int t = (int)syscall(SYS_open_tree, ns, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH);
  if (t < 0) refuse("this is a bug", "cannot bind the user namespace: %s", ERR);
  attach(t, nsfile, "", "the user namespace");
}
