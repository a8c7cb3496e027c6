/* The container's root filesystem, built with the new mount API in the
 * helper's private mount namespace. */
#ifndef SHOAL_MOUNTS_H
#define SHOAL_MOUNTS_H

/* The tmpfs (size: its size= option, or NULL) on mnt, the image fd img
 * through a loop device, idmapped by the user namespace ns, under an overlay
 * on rootfs; ns itself bound on nsfile. Closes img. */
void mount_container(int img, const char *image, const char *size, int ns, int rootfs, int mnt,
                     int nsfile);

#endif
