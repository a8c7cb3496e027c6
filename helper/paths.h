/* Rules on path names and on facts about them, no file system access. Pure:
 * tests call them through FFI. */
#ifndef SHOAL_PATHS_H
#define SHOAL_PATHS_H

#include <stdint.h>

/* Whether path lies strictly below dir (on a component boundary). */
int path_inside(const char *path, const char *dir);

/* Whether path is absolute and canonical: no ".", ".." or empty component,
 * no trailing '/'. */
int path_canonical(const char *path);

/* The bundle rule (main.c's header, "Bundle"). Why a canonical bundle path
 * cannot be one (its name, or its BASE not being the configured run dir, ""
 * when none is), or NULL. */
const char *bundle_path_why(const char *bundle, const char *rundir);

enum dir_role { ABOVE_BASE, BASE, BUNDLE };

/* Why a path component with owner uid and st_mode mode (as lstat gives them)
 * cannot stand in role on the bundle path of caller, or NULL. */
const char *dir_why(enum dir_role role, uint32_t uid, uint32_t mode, uint32_t caller);

/* Both rules on a whole bundle path: uids[i] and modes[i] are the facts of
 * its i-th component ("/" first, the bundle last; n of them). Returns NULL,
 * or why with *bad the index of the refused component (-1: the path itself). */
const char *bundle_why(const char *bundle, const char *rundir, uint32_t caller, const uint32_t *uids,
                       const uint32_t *modes, int n, int *bad);

/* The NAME of image when it is literally REPO/images/NAME with NAME an
 * image file as repositories store it (sha256-<64 hex>.sqsh or
 * sha512-<128 hex>.sqsh, lowercase hex), else NULL. */
const char *image_name_in(const char *image, const char *repo);

/* Whether digest is one as shoal writes them: sha256, sha384 or sha512, ':',
 * then 64, 96 or 128 lowercase hex digits (mod/image/registry/digest.ts). */
int digest_ok(const char *digest);

/* The store's rule (mod/image/cluster/layout.ts): "<algorithm>/<hex>" when
 * image is literally STORE/images/<algorithm>/<hex>/image.sqsh of a digest
 * digest_ok accepts, else NULL. The returned pointer is into image. */
const char *store_image_in(const char *image, const char *store);

#define STORE_IMAGE_FILE "image.sqsh"

#endif
