/* The helper's last part: runc's parent, holding no privilege, until nothing
 * of the container is left (main.c's header tells the whole rule). */
#ifndef SHOAL_WATCHDOG_H
#define SHOAL_WATCHDOG_H

#include <sys/types.h>

#include "idmap.h"

/* Runs runc in a child and stays as its watchdog, holding no privilege, until
 * runc exits (then its status is the helper's), the caller dies (then the
 * container is killed) or asks with SIGRTMIN+2 (then the container is killed
 * and runc's status is the helper's). Either way every process left in the container (the
 * user namespace nsfd, whose uid map is um) is killed and reaped before the helper exits: the
 * container's mount namespace, its mounts and the loop device go with the
 * last of them. Never returns. */
void watch(const char *runc, char **args, char **envp, pid_t caller, int nsfd, const struct idmap *um)
    __attribute__((noreturn));

#endif
