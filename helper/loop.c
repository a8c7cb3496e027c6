#define _GNU_SOURCE
#include "loop.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "caller.h"
#include "fail.h"

#define LOOP_TRIES 32
#define LOCK_DIR "/run/shoal-mount"

/* The caller's lock, held until closed. */
static int lock_user(void) {
  if (mkdir(LOCK_DIR, 0700) && errno != EEXIST) refuse("is /run writable by root?", "cannot create %s: %s", LOCK_DIR, ERR);
  /* root:root: what the helper creates gets the caller's gid, its egid. */
  int dir = open(LOCK_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  struct stat st;
  if (dir < 0 || fstat(dir, &st) || st.st_uid != 0 || (st.st_mode & 077) || fchown(dir, 0, 0))
    refuse("ask your admin to remove it; the helper makes it, root's with mode 0700",
           "%s is not root's alone", LOCK_DIR);
  char name[64];
  snprintf(name, sizeof name, "user-%u.lock", (unsigned)me.uid);
  int fd = openat(dir, name, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
  close(dir);
  if (fd < 0 || fchown(fd, 0, 0) || flock(fd, LOCK_EX)) refuse("ask your admin", "cannot lock %s/%s: %s", LOCK_DIR, name, ERR);
  return fd;
}

/* How many bound loop devices carry tag. */
static int tagged(const char *tag) {
  DIR *d = opendir("/sys/block");
  if (!d) refuse("is /sys mounted?", "cannot list /sys/block: %s", ERR);
  int n = 0;
  for (struct dirent *e; (e = readdir(d));) {
    char path[300];
    if (strncmp(e->d_name, "loop", 4) || !e->d_name[4]) continue;
    snprintf(path, sizeof path, "/dev/%s", e->d_name);
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    struct loop_info64 info;
    if (fd >= 0 && ioctl(fd, LOOP_GET_STATUS64, &info) == 0 &&
        strncmp((const char *)info.lo_file_name, tag, strlen(tag)) == 0)
      n++;
    if (fd >= 0) close(fd);
  }
  closedir(d);
  return n;
}

int loop_attach(int img, const char *image, int max_loops, char dev[64]) {
  char tag[32];
  snprintf(tag, sizeof tag, "shoal-mount:%u:", (unsigned)me.uid);
  int lock = lock_user(), held = tagged(tag);
  if (held >= max_loops)
    refuse("end the processes that keep finished containers' namespaces open",
           "you hold %d loop devices through shoal-mount (limit %d)", held, max_loops);
  int loop = -1, ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
  if (ctl < 0) refuse("is the loop module loaded?", "cannot open /dev/loop-control: %s", ERR);
  for (int i = 0; i < LOOP_TRIES && loop < 0; i++) {
    int n = ioctl(ctl, LOOP_CTL_GET_FREE);
    if (n < 0) refuse("too many loop devices in use?", "no free loop device: %s", ERR);
    snprintf(dev, 64, "/dev/loop%d", n);
    loop = open(dev, O_RDWR | O_CLOEXEC);
    if (loop < 0) refuse("is /dev a devtmpfs?", "cannot open %s: %s", dev, ERR);
    struct loop_config lc;
    memset(&lc, 0, sizeof lc);
    lc.fd = (unsigned)img;
    lc.info.lo_flags = LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR;
    snprintf((char *)lc.info.lo_file_name, LO_NAME_SIZE, "%s%s", tag, image);
    if (ioctl(loop, LOOP_CONFIGURE, &lc) == 0) break;
    int err = errno;
    close(loop);
    loop = -1;
    if (err != EBUSY) refuse("the kernel needs LOOP_CONFIGURE (Linux 5.8)", "cannot set up %s: %s", dev, strerror(err));
  }
  if (loop < 0) refuse("try again", "loop devices kept being taken by others (%d tries)", LOOP_TRIES);
  close(ctl);
  close(lock);
  return loop;
}
