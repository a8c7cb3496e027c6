/* Loop devices for images, counted per user. */
#ifndef SHOAL_LOOP_H
#define SHOAL_LOOP_H

/* Attaches the image fd read-only, with autoclear, to a free loop device
 * tagged "shoal-mount:UID:" (its lo_file_name), unless the caller already
 * holds max_loops tagged ones: a device stays bound as long as its mount
 * lives, and a finished container's mounts live on while anyone holds its
 * mount namespace (a /proc/PID/ns/mnt descriptor). Counting and attaching
 * happen under the caller's lock (/run/shoal-mount/user-UID.lock, root's), so
 * parallel runs cannot overshoot. Returns the device's fd, its name in dev. */
int loop_attach(int img, const char *image, int max_loops, char dev[64]);

#endif
