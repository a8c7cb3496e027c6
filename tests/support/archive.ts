/**
 * Archive members and tar files as `podman save --format oci-archive` and
 * `docker save` write them, for the load tests and the tests that run loaded
 * images.
 */
import { gzipSync } from "node:zlib";
import { type Image, makeIndex } from "./oci.ts";
import { tarArchive, type TarEntry } from "./tar.ts";

export type Member = TarEntry;

export function file(path: string, content: Uint8Array | string): Member {
  return { type: "file", path, content };
}

export function hexOf(digest: string): string {
  return digest.slice("sha256:".length);
}

/** An image's blobs as OCI layout members. */
export function blobMembers(image: Image): Member[] {
  return [...image.layers, image.config, image.manifest].map((b) =>
    file(`blobs/sha256/${hexOf(b.digest)}`, b.data)
  );
}

export const OCI_LAYOUT = file("oci-layout", JSON.stringify({ imageLayoutVersion: "1.0.0" }));

/** An OCI layout whose index.json lists the platform manifests itself. */
export function ociFlat(images: Image[]): Member[] {
  const index = makeIndex(images);
  return [
    OCI_LAYOUT,
    file("index.json", index.manifest.data),
    ...images.flatMap(blobMembers),
  ];
}

/** The tar of `members`; a blob two images share is written once, as real tools do. */
export function archive(members: Member[], gzip = false): Uint8Array {
  const unique = members.filter((m, i) => members.findIndex((o) => o.path === m.path) === i);
  const tar = tarArchive(unique);
  return gzip ? gzipSync(tar) : tar;
}
