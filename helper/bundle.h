/* The bundle dir a run mounts on, walked and checked as the caller. */
#ifndef SHOAL_BUNDLE_H
#define SHOAL_BUNDLE_H

#include "config.h"

/* Walks the bundle path from / with O_NOFOLLOW as the caller (the rule in
 * main.c's header); returns an O_PATH fd of the bundle dir. */
int open_bundle(const struct config *cfg, const char *bundle);

/* Opens DIR/name as the caller, creating it if missing, and checks it is the
 * caller's own directory (or regular file), not a symlink. */
int own_entry(int dirfd, const char *bundle, const char *name, int want_dir);

#endif
