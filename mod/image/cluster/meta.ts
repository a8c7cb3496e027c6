/**
 * What the store records beside each image (`meta.json`): what a run needs
 * of the image's config, and how it got there. Written once by the converter
 * and checked when read, like every file shoal reads back.
 */
import { array, integer, nonEmpty, object, oneOf, type Out, string } from "../../shape.ts";
import { digest, runFieldsShape } from "../store/metadata.ts";

export const CLUSTER_META_VERSION = 1;

const shape = {
  schemaVersion: oneOf([CLUSTER_META_VERSION]),
  /** The platform manifest's digest: the image's key. */
  digest,
  configDigest: digest,
  ...runFieldsShape,
  /** The uid whose publish converted it, and when. */
  publisher: integer(0),
  publishedAt: string(),
  /** Signatures the converter verified with the site's keys: digest signed, key, repository. */
  signatures: array(object({ digest, key: digest, repository: nonEmpty })),
};

export const clusterMeta = object(shape);
export type ClusterMeta = Out<typeof shape>;
