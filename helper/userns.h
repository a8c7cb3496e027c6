/* The container's user namespace, made and mapped by the helper. */
#ifndef SHOAL_USERNS_H
#define SHOAL_USERNS_H

#include "idmap.h"

/* A user namespace carrying the container's mapping, owned by the caller
 * (setgroups denied without a subordinate gid); returns an fd of it. */
int make_userns(const struct idmap *um, const struct idmap *gm);

#endif
