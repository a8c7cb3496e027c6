/* The container's root filesystem, built with the new mount API in the
 * helper's private mount namespace. */
#ifndef SHOAL_MOUNTS_H
#define SHOAL_MOUNTS_H

/* The tmpfs (size: its size= option) on mnt, the image fd img through a loop
 * device (at most max_loops of the caller's at once, see loop.h), idmapped
 * by the user namespace ns, under an overlay on rootfs; ns itself bound on
 * nsfile. Closes img. */
void mount_container(int img, const char *image, const char *size, int max_loops, int ns, int rootfs,
                     int mnt, int nsfile);

#endif
