/* The image file a run mounts, opened and checked once. */
#ifndef SHOAL_IMAGE_H
#define SHOAL_IMAGE_H

#include "config.h"

/* Opens the image (the rule in main.c's header, "Image") and checks it
 * through that one fd; returns the fd. */
int open_image(const struct config *cfg, const char *image);

#endif
