/* `shoal-mount publish DIGEST`: a user's publish into the cluster store runs
 * the converter as the store's owner (main.c's header, "Publish"). */
#ifndef SHOAL_PUBLISH_H
#define SHOAL_PUBLISH_H

void publish(const char *digest) __attribute__((noreturn));

/* `shoal-mount ref DIGEST`: a pull of an image the store has records the
 * caller's reference (STORE/refs/UID/<algorithm>-<hex>), as the owner. */
void ref(const char *digest) __attribute__((noreturn));

/* `shoal-mount unref DIGEST`: the caller's `shoal rmi` of a store image drops
 * their reference (STORE/refs/UID/<algorithm>-<hex>), as the store's owner. */
void unref(const char *digest) __attribute__((noreturn));

#endif
