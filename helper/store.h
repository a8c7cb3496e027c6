/* The cluster image store (docs/design/store.md): its owner's account, the
 * store directory checked, and the directory of one of its images. */
#ifndef SHOAL_STORE_H
#define SHOAL_STORE_H

#include <limits.h>
#include <sys/types.h>

#include "config.h"

struct store_owner {
  uid_t uid;
  gid_t gid;
  char name[256], home[PATH_MAX];
};

/* The store's directory (an O_PATH fd) and its owner, after the rule: every
 * directory above it root's and not writable by group or others, the store
 * the owner's (not root) and not writable by group or others, no symlink on
 * the way. Refuses when the site has none or it breaks the rule. */
int open_store(const struct config *cfg, struct store_owner *owner);

/* The directory STORE/images/<algorithm>/<hex> (rel is "<algorithm>/<hex>",
 * paths.h's store_image_in), each level the owner's and not writable by
 * group or others, opened as the caller with O_NOFOLLOW; *owner is filled. */
int open_store_image_dir(const struct config *cfg, const char *rel, size_t rel_len,
                         struct store_owner *owner);

#endif
