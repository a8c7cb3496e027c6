/**
 * The native libraries of a root tree's linker cache, read (sys/ldcache.ts)
 * rather than asked of `ldconfig -p`, so a generator looks at the tree it is
 * given (a test's fake one, or an image being built) and not at the machine
 * it runs on.
 */
import { type CacheEntry, NATIVE_FLAGS, parseLdCache } from "../sys/ldcache.ts";

/** A library the cache knows: its soname and the path the loader would open. */
export type CachedLibrary = CacheEntry;

/** The native libraries of `root`'s linker cache; none when the tree has no cache. */
export function readLdCache(root: string): CachedLibrary[] {
  const file = `${root.replace(/\/$/, "")}/etc/ld.so.cache`;
  let bytes: Uint8Array;
  try {
    bytes = Deno.readFileSync(file);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return [];
    throw new Error(`${file}: ${(err as Error).message}`);
  }
  return parseLdCache(bytes, file).entries.filter((l) => (l.flags & 0xffff) === NATIVE_FLAGS);
}
