/* Loop devices for images. */
#ifndef SHOAL_LOOP_H
#define SHOAL_LOOP_H

/* Attaches the image fd read-only, with autoclear, to a free loop device;
 * returns the device's fd and its name in dev. */
int loop_attach(int img, const char *image, char dev[64]);

#endif
