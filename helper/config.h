/* The installation the helper trusts: its own location, the root-owned site
 * config (read with json.h) and runc, each checked down from /. */
#ifndef SHOAL_CONFIG_H
#define SHOAL_CONFIG_H

#include <limits.h>

/* helper.maxLoopDevicesPerUser and helper.writableTmpfsSize by default. */
#define DEFAULT_MAX_LOOPS 256
#define DEFAULT_TMPFS_SIZE "1g"

struct config {
  char file[PATH_MAX];
  int user_images;
  int max_loops;      /* loop devices a user may hold through the helper at once */
  char tmpfs_size[16]; /* the writable layer's size by default, and at most */
  char local[PATH_MAX], central[PATH_MAX], runc[PATH_MAX];
  char rundir[PATH_MAX]; /* runDir expanded; "" when unset: any BASE passing the walk */
  char runc_real[PATH_MAX]; /* exec'd by this name: its chain is root's alone */
  char prefix[PATH_MAX];    /* the installation's, from the helper's own location */
  char store[PATH_MAX];     /* store.path; "" when the site has no cluster store */
  char store_owner[256];    /* store.owner, default "shoal" */
};

/* Everything about the installation, checked; refuses on the first problem. */
void load_install(struct config *cfg);

/* path and every directory above it: root-owned, not writable by group/others. */
void check_chain(const char *path);

/* The bytes a tmpfs size= option stands for (digits, then optionally k, m, g
 * or % of the memory), or -1 when it is not one. */
long long tmpfs_bytes(const char *size);

/* check_chain on path as named and as resolved; the resolution in real. */
void check_trusted(const char *what, const char *path, char real[PATH_MAX]);

#endif
