#include "loop.h"

#include <fcntl.h>
#include <linux/loop.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "fail.h"

#define LOOP_TRIES 32

int loop_attach(int img, const char *image, char dev[64]) {
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
    snprintf((char *)lc.info.lo_file_name, LO_NAME_SIZE, "%s", image);
    if (ioctl(loop, LOOP_CONFIGURE, &lc) == 0) break;
    int err = errno;
    close(loop);
    loop = -1;
    if (err != EBUSY) refuse("the kernel needs LOOP_CONFIGURE (Linux 5.8)", "cannot set up %s: %s", dev, strerror(err));
  }
  if (loop < 0) refuse("try again", "loop devices kept being taken by others (%d tries)", LOOP_TRIES);
  close(ctl);
  return loop;
}
