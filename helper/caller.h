/* Who runs the helper (the real ids and the user database), and the switches
 * between their ids and root's. */
#ifndef SHOAL_CALLER_H
#define SHOAL_CALLER_H

#include <limits.h>
#include <sys/types.h>

struct caller {
  uid_t uid;
  gid_t gid;
  char user[256], home[PATH_MAX];
  gid_t groups[NGROUPS_MAX];
  int ngroups;
};

/* Filled once by who_is_calling(), read-only afterwards. */
extern struct caller me;

void who_is_calling(void);
/* Switches the effective uid between the caller (to resolve their paths with
 * their permissions) and root (to mount). The saved uid stays 0 until drop(). */
void become(uid_t id);
/* Gives up root for good (verified): the caller's ids, groups, no capability. */
void drop(void);
/* The same to another account's ids and groups (the cluster store's owner). */
void drop_to(uid_t uid, gid_t gid, int ngroups, const gid_t *groups);

#endif
