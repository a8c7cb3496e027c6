/* Rules on path names alone, no file system access. Pure: tests call them
 * through FFI. */
#ifndef SHOAL_PATHS_H
#define SHOAL_PATHS_H

/* Whether path lies strictly below dir (on a component boundary). */
int path_inside(const char *path, const char *dir);

/* Whether path is absolute and canonical: no ".", ".." or empty component,
 * no trailing '/'. */
int path_canonical(const char *path);

#endif
