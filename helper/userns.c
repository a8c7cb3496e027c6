#define _GNU_SOURCE
#include "userns.h"

#include <fcntl.h>
#include <linux/nsfs.h>
#include <linux/securebits.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "caller.h"
#include "fail.h"

static void write_proc(pid_t pid, const char *file, const char *text) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, file);
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
    refuse("check /etc/subuid and /etc/subgid: ranges must not overlap the user's own id",
           "cannot write %s: %s", path, ERR);
  close(fd);
}

/* So that runc, running as the caller, may join it, and so that the watchdog,
 * running as the caller, may kill processes of the container that run as
 * subordinate ids (the owner holds CAP_KILL in it). A child creates it with
 * the caller's euid and egid (the kernel makes them the owner) but root's
 * capabilities (securebits keep them across the change of euid), so it works
 * where unprivileged user namespaces are disabled (Debian's sysctl, Ubuntu's
 * AppArmor rule: both ask for CAP_SYS_ADMIN); root writes its maps. */
int make_userns(const struct idmap *um, const struct idmap *gm) {
  int ready[2], done[2];
  if (pipe2(ready, O_CLOEXEC) || pipe2(done, O_CLOEXEC)) refuse("this is a bug", "pipe: %s", ERR);
  pid_t pid = fork();
  if (pid < 0) refuse("too many processes?", "fork: %s", ERR);
  if (pid == 0) {
    char c = 0;
    close(ready[0]);
    close(done[1]);
    if (prctl(PR_SET_SECUREBITS, SECBIT_NO_SETUID_FIXUP | SECBIT_NO_SETUID_FIXUP_LOCKED, 0, 0, 0) ||
        setresgid(-1, me.gid, -1) || setresuid(-1, me.uid, -1) || unshare(CLONE_NEWUSER) ||
        write(ready[1], &c, 1) != 1)
      _exit(1);
    if (read(done[0], &c, 1) < 0) _exit(1);
    _exit(0);
  }
  close(ready[1]);
  close(done[0]);
  char c;
  if (read(ready[0], &c, 1) != 1) {
    waitpid(pid, NULL, 0);
    refuse("is user.max_user_namespaces 0? ask your admin", "cannot create a user namespace");
  }
  char text[MAP_TEXT_MAX];
  format_map(um, text, 1);
  write_proc(pid, "uid_map", text);
  /* As newgidmap does: setgroups could drop a group that denies access. */
  if (!gm->subordinate) write_proc(pid, "setgroups", "deny");
  format_map(gm, text, 1);
  write_proc(pid, "gid_map", text);
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/ns/user", (int)pid);
  int ns = open(path, O_RDONLY | O_CLOEXEC);
  if (ns < 0) refuse("this is a bug", "cannot open %s: %s", path, ERR);
  uid_t owner;
  if (ioctl(ns, NS_GET_OWNER_UID, &owner) || owner != me.uid)
    refuse("this is a bug", "the container's user namespace is not owned by you");
  close(done[1]);
  close(ready[0]);
  waitpid(pid, NULL, 0);
  return ns;
}
