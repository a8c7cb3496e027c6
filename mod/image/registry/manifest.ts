/**
 * Image manifests as registries serve them: Docker v2 schema 2 manifest and
 * manifest list, OCI manifest and index. Schema 1 is refused; it is long
 * deprecated and unsigned content cannot be verified the same way.
 */
import * as z from "../../zod.ts";
import { ShoalError } from "../../errors.ts";
import { isDigest } from "./digest.ts";

export const mediaTypes = {
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  dockerManifestList: "application/vnd.docker.distribution.manifest.list.v2+json",
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  ociIndex: "application/vnd.oci.image.index.v1+json",
  dockerConfig: "application/vnd.docker.container.image.v1+json",
  ociConfig: "application/vnd.oci.image.config.v1+json",
} as const;

/** The Accept header for manifest requests: all four kinds, so the registry never down-converts. */
export const manifestAccept = [
  mediaTypes.ociIndex,
  mediaTypes.dockerManifestList,
  mediaTypes.ociManifest,
  mediaTypes.dockerManifest,
].join(", ");

const schema1Types = [
  "application/vnd.docker.distribution.manifest.v1+json",
  "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

export type Compression = "gzip" | "zstd" | "none";

interface LayerType {
  compression: Compression;
  /** Foreign (Docker) or non-distributable (OCI): may live at `urls` instead of the registry. */
  foreign: boolean;
}

const layerTypes: Record<string, LayerType> = {
  "application/vnd.docker.image.rootfs.diff.tar.gzip": { compression: "gzip", foreign: false },
  "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip": {
    compression: "gzip",
    foreign: true,
  },
  "application/vnd.oci.image.layer.v1.tar": { compression: "none", foreign: false },
  "application/vnd.oci.image.layer.v1.tar+gzip": { compression: "gzip", foreign: false },
  "application/vnd.oci.image.layer.v1.tar+zstd": { compression: "zstd", foreign: false },
  "application/vnd.oci.image.layer.nondistributable.v1.tar": { compression: "none", foreign: true },
  "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": {
    compression: "gzip",
    foreign: true,
  },
  "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd": {
    compression: "zstd",
    foreign: true,
  },
};

const digest = z.string().check(
  z.refine(isDigest, { message: "not a sha256, sha384 or sha512 digest" }),
);
const stringMap = z.record(z.string(), z.string());

export const descriptorSchema = z.looseObject({
  mediaType: z.string(),
  digest,
  size: z.int().check(z.minimum(0)),
  urls: z.optional(z.array(z.string())),
  annotations: z.optional(stringMap),
});
export type Descriptor = z.output<typeof descriptorSchema>;

export const platformSchema = z.looseObject({
  os: z.string(),
  architecture: z.string(),
  variant: z.optional(z.string()),
  "os.version": z.optional(z.string()),
});

export const imageManifestSchema = z.looseObject({
  schemaVersion: z.literal(2),
  mediaType: z.optional(z.string()),
  config: descriptorSchema,
  layers: z.array(descriptorSchema),
  annotations: z.optional(stringMap),
});
export type ImageManifest = z.output<typeof imageManifestSchema>;

export const imageIndexSchema = z.looseObject({
  schemaVersion: z.literal(2),
  mediaType: z.optional(z.string()),
  manifests: z.array(z.extend(descriptorSchema, { platform: z.optional(platformSchema) })),
  annotations: z.optional(stringMap),
});
export type ImageIndex = z.output<typeof imageIndexSchema>;

/** The image configuration blob; only what shoal uses is checked, the rest kept. */
export const imageConfigSchema = z.looseObject({
  architecture: z.optional(z.string()),
  os: z.optional(z.string()),
  variant: z.optional(z.string()),
  created: z.optional(z.string()),
  config: z.optional(z.looseObject({
    Env: z.nullish(z.array(z.string())),
    Entrypoint: z.nullish(z.array(z.string())),
    Cmd: z.nullish(z.array(z.string())),
    WorkingDir: z.nullish(z.string()),
    User: z.nullish(z.string()),
    Labels: z.nullish(stringMap),
  })),
  rootfs: z.optional(z.looseObject({
    type: z.string(),
    diff_ids: z.array(z.string()),
  })),
});
export type ImageConfig = z.output<typeof imageConfigSchema>;

export type ParsedManifest =
  | { kind: "manifest"; mediaType: string; manifest: ImageManifest }
  | { kind: "index"; mediaType: string; index: ImageIndex };

/**
 * Parses manifest bytes. The kind comes from the served Content-Type, else the
 * document's own `mediaType`, else its shape (OCI allows omitting both).
 */
export function parseManifest(
  bytes: Uint8Array,
  contentType: string | null,
  what: string,
): ParsedManifest {
  let doc: unknown;
  try {
    doc = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw new ShoalError(`${what}: the registry served a manifest that is not JSON`);
  }
  if (typeof doc !== "object" || doc === null) {
    throw new ShoalError(`${what}: the registry served a manifest that is not a JSON object`);
  }
  const d = doc as Record<string, unknown>;
  const served = (contentType ?? "").split(";")[0]!.trim().toLowerCase();
  const declared = typeof d.mediaType === "string" ? d.mediaType : "";
  if (schema1Types.includes(served) || schema1Types.includes(declared) || d.schemaVersion === 1) {
    throw new ShoalError(
      `${what}: Docker image manifest schema 1 is not supported (deprecated since 2017)`,
      { hint: "push the image again with a current Docker, Podman or Buildah" },
    );
  }
  const known = [
    mediaTypes.ociIndex,
    mediaTypes.dockerManifestList,
    mediaTypes.ociManifest,
    mediaTypes.dockerManifest,
  ] as string[];
  const mediaType = known.includes(served)
    ? served
    : known.includes(declared)
    ? declared
    : Array.isArray(d.manifests)
    ? mediaTypes.ociIndex
    : d.config !== undefined && Array.isArray(d.layers)
    ? mediaTypes.ociManifest
    : "";
  if (mediaType === "") {
    throw new ShoalError(
      `${what}: unsupported manifest type ${JSON.stringify(served || declared || "unknown")}`,
      { hint: "shoal pulls container images (Docker v2 or OCI manifests)" },
    );
  }
  if (mediaType === mediaTypes.ociIndex || mediaType === mediaTypes.dockerManifestList) {
    const r = imageIndexSchema.safeParse(doc);
    if (!r.success) throw invalid(what, r.error);
    return { kind: "index", mediaType, index: r.data };
  }
  const r = imageManifestSchema.safeParse(doc);
  if (!r.success) throw invalid(what, r.error);
  return { kind: "manifest", mediaType, manifest: r.data };
}

function invalid(what: string, error: z.core.$ZodError): ShoalError {
  const issue = error.issues[0];
  const where = issue?.path.length ? ` at ${issue.path.join(".")}` : "";
  return new ShoalError(
    `${what}: invalid manifest${where}: ${issue?.message ?? "unknown problem"}`,
  );
}

export interface LayerDescriptor extends Descriptor {
  compression: Compression;
  foreign: boolean;
}

/** Classifies the layers; artifacts that are not container images are refused here. */
export function imageLayers(manifest: ImageManifest, what: string): LayerDescriptor[] {
  const configType = manifest.config.mediaType;
  if (configType !== mediaTypes.dockerConfig && configType !== mediaTypes.ociConfig) {
    throw new ShoalError(
      `${what}: not a container image (its config is ${JSON.stringify(configType)})`,
    );
  }
  return manifest.layers.map((layer) => {
    const type = layerTypes[layer.mediaType];
    if (type === undefined) {
      throw new ShoalError(
        `${what}: layer ${layer.digest} has unsupported media type ${
          JSON.stringify(layer.mediaType)
        }`,
      );
    }
    return { ...layer, ...type };
  });
}

export function parseImageConfig(bytes: Uint8Array, what: string): ImageConfig {
  let doc: unknown;
  try {
    doc = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw new ShoalError(`${what}: the image configuration is not JSON`);
  }
  const r = imageConfigSchema.safeParse(doc);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new ShoalError(
      `${what}: invalid image configuration at ${issue?.path.join(".")}: ${issue?.message}`,
    );
  }
  return r.data;
}
