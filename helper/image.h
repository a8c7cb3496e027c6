/* The image file a run mounts, opened and checked once. */
#ifndef SHOAL_IMAGE_H
#define SHOAL_IMAGE_H

#include "config.h"

/* Opens the image as the caller and checks it through that one fd (the rule
 * in main.c's header); returns the fd. */
int open_image(const struct config *cfg, const char *image);

#endif
