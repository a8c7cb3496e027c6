/**
 * The newest GLIBC_x.y an image's libc.so.6 defines: what host libraries
 * given to its containers (CDI driver libraries, `--mpi`) may need at most.
 * Found when an image is stored (pull, the store's converter) and kept with
 * it, so that runs compare without reading the image.
 */
import { ImageFiles } from "../mpi/image_files.ts";
import { imageLibc, imageLibs } from "../mpi/image_libs.ts";
import { glibcProvided } from "../mpi/checks.ts";

/** The image's glibc version, or undefined when it has none (static or musl images). */
export async function imageGlibc(squashfs: string): Promise<string | undefined> {
  const files = await ImageFiles.open(squashfs);
  const libc = await imageLibc(await imageLibs(files, [], "/bin/sh"));
  return libc === undefined ? undefined : glibcProvided(libc);
}
