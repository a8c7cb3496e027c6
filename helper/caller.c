#define _GNU_SOURCE
#include "caller.h"

#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fail.h"

struct caller me;

void who_is_calling(void) {
  me.uid = getuid();
  me.gid = getgid();
  errno = 0;
  struct passwd *pw = getpwuid(me.uid);
  if (!pw) refuse("ask your admin", "uid %u is not in the user database", (unsigned)me.uid);
  if (snprintf(me.user, sizeof me.user, "%s", pw->pw_name) >= (int)sizeof me.user ||
      snprintf(me.home, sizeof me.home, "%s", pw->pw_dir) >= (int)sizeof me.home || me.home[0] != '/')
    refuse("ask your admin", "the user database entry of uid %u is unusable", (unsigned)me.uid);
  me.ngroups = getgroups(NGROUPS_MAX, me.groups);
  if (me.ngroups < 0) refuse("this is a bug", "getgroups: %s", ERR);
}

void become(uid_t id) {
  if (setresuid(-1, id, -1)) refuse("this is a bug", "seteuid(%u): %s", (unsigned)id, ERR);
}

void drop(void) { drop_to(me.uid, me.gid, me.ngroups, me.groups); }

void drop_to(uid_t uid, gid_t gid, int ngroups, const gid_t *groups) {
  if (setgroups((size_t)ngroups, groups) || setresgid(gid, gid, gid) || setresuid(uid, uid, uid))
    refuse("this is a bug", "cannot drop privileges: %s", ERR);
  uid_t r, e, s;
  gid_t gr, ge, gs;
  struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct d[2];
  if (getresuid(&r, &e, &s) || getresgid(&gr, &ge, &gs) || syscall(SYS_capget, &h, d) ||
      r != uid || e != uid || s != uid || gr != gid || ge != gid || gs != gid ||
      (uid != 0 && (setuid(0) == 0 || d[0].effective || d[0].permitted || d[1].effective || d[1].permitted)))
    refuse("this is a bug", "privileges were not dropped");
}
