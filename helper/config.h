/* The installation the helper trusts: its own location, the root-owned site
 * config (read with json.h) and runc, each checked down from /. */
#ifndef SHOAL_CONFIG_H
#define SHOAL_CONFIG_H

#include <limits.h>

struct config {
  char file[PATH_MAX];
  int user_images;
  char local[PATH_MAX], central[PATH_MAX], runc[PATH_MAX];
  char rundir[PATH_MAX]; /* runDir expanded; "" when unset: any BASE passing the walk */
  char runc_real[PATH_MAX]; /* exec'd by this name: its chain is root's alone */
};

/* Everything about the installation, checked; refuses on the first problem. */
void load_install(struct config *cfg);

/* path and every directory above it: root-owned, not writable by group/others. */
void check_chain(const char *path);

/* check_chain on path as named and as resolved; the resolution in real. */
void check_trusted(const char *what, const char *path, char real[PATH_MAX]);

#endif
