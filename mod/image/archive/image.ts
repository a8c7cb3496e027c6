/**
 * Finding the image in a read archive. Two layouts:
 *
 *   docker-archive  manifest.json: [{Config, RepoTags, Layers}] naming members
 *                   by path (`<id>/layer.tar` and `<hex>.json` of classic
 *                   `docker save`, `blobs/sha256/<hex>` since Docker 25, which
 *                   also writes an OCI layout beside it)
 *   oci-archive     oci-layout + index.json, everything else a blob
 *                   `blobs/<alg>/<hex>` named by its digest
 *
 * When an archive holds several images, the one named like the NAME the user
 * gives (RepoTags; `io.containerd.image.name` or
 * `org.opencontainers.image.ref.name`) is taken, else the one for the
 * platform, else the error lists what is inside.
 *
 * What is trusted: an OCI blob was checked against its digest when read, so
 * the chain index -> manifest -> config and layers holds. A docker-archive
 * names members by path, so there the chain is config -> rootfs.diff_ids ->
 * each layer's uncompressed digest, checked by `verifyDiffIds`.
 */
import { createHash } from "node:crypto";
import * as z from "../../zod.ts";
import { ShoalError } from "../../errors.ts";
import { type ByteBudget, type LayerBlob, layerLabel, openLayer } from "../layer.ts";
import { formatReference, type ImageReference, parseReference } from "../reference.ts";
import { referenceKey } from "../store/metadata.ts";
import { digestOf } from "../registry/hash.ts";
import {
  type Descriptor,
  type ImageConfig,
  imageIndexSchema,
  imageLayers,
  imageManifestSchema,
  mediaTypes,
  parseImageConfig,
} from "../registry/manifest.ts";
import {
  formatPlatform,
  type Platform,
  platformMatches,
  selectManifest,
} from "../registry/platform.ts";
import type { ArchiveContents, Member } from "./read.ts";

export type ArchiveFormat = "docker-archive" | "oci-archive";

export interface ArchiveLayer extends LayerBlob {
  size: number;
  /** What the config's rootfs.diff_ids says the uncompressed layer hashes to. */
  diffId: string;
}

export interface ArchiveImage {
  format: ArchiveFormat;
  configDigest: string;
  config: ImageConfig;
  platform: Platform;
  /** Bottom first, each a file in the work directory. */
  layers: ArchiveLayer[];
  /** oci-archive: the digest of what was chosen (an index of several platforms, or a manifest). */
  digest?: string;
  /** oci-archive: the chosen platform's manifest, when `digest` is an index. */
  manifestDigest?: string;
}

/** One image an archive offers, before it is chosen. */
interface Candidate {
  /** The names it carries (RepoTags, annotations). */
  names: string[];
  /** How it is shown in a list when no name or platform decides. */
  fallbackName: string;
  platforms(): Promise<Platform[]>;
  load(wanted: Platform): Promise<ArchiveImage>;
}

const dockerManifestSchema = z.array(z.looseObject({
  Config: z.string().check(z.minLength(1)),
  RepoTags: z.nullish(z.array(z.string())),
  Layers: z.array(z.string()),
})).check(z.minLength(1));

const ociLayoutSchema = z.looseObject({ imageLayoutVersion: z.string().check(z.regex(/^1\./)) });

/** Annotations that name an image in an index (containerd's first: it is a full reference). */
const NAME_ANNOTATIONS = ["io.containerd.image.name", "org.opencontainers.image.ref.name"];

/**
 * The image `ref` names in the archive (or the only one, or the one for
 * `wanted`); `explicit` says the platform was asked for, not assumed.
 */
export async function findImage(
  contents: ArchiveContents,
  ref: ImageReference,
  wanted: Platform,
  explicit: boolean,
): Promise<ArchiveImage> {
  const manifest = contents.member("manifest.json");
  const index = contents.member("index.json");
  let candidates: Candidate[];
  if (manifest !== undefined) candidates = await dockerCandidates(contents, manifest);
  else if (index !== undefined) candidates = await ociCandidates(contents, index);
  else {
    throw new ShoalError(
      `${contents.label}: not a docker-archive or oci-archive (no manifest.json or index.json in it)`,
      { hint: "give the tar file that `docker save`, `podman save` or `skopeo copy` wrote" },
    );
  }
  const chosen = await choose(contents.label, candidates, ref, wanted);
  const image = await chosen.load(wanted);
  if (explicit && !platformMatches(image.platform, wanted)) {
    throw new ShoalError(
      `${contents.label}: the image is for ${formatPlatform(image.platform)}, not ${
        formatPlatform(wanted)
      }`,
    );
  }
  return image;
}

async function choose(
  label: string,
  candidates: Candidate[],
  ref: ImageReference,
  wanted: Platform,
): Promise<Candidate> {
  if (candidates.length === 0) throw new ShoalError(`${label}: the archive holds no image`);
  if (candidates.length === 1) return candidates[0]!;
  const named = candidates.filter((c) => c.names.some((n) => nameMatches(n, ref)));
  const pool = named.length > 0 ? named : candidates;
  if (pool.length === 1) return pool[0]!;
  const fits: Candidate[] = [];
  const shown: string[] = [];
  for (const c of pool) {
    const platforms = await c.platforms();
    if (platforms.some((p) => platformMatches(p, wanted))) fits.push(c);
    const name = c.names[0] ?? c.fallbackName;
    shown.push(`${name} (${platforms.map(formatPlatform).join(", ") || "no platform"})`);
  }
  if (fits.length === 1) return fits[0]!;
  const what = named.length > 0
    ? `${pool.length} images named ${formatReference(ref)}`
    : `${pool.length} images and none is named ${formatReference(ref)}`;
  const why = fits.length === 0
    ? `none is for ${formatPlatform(wanted)}`
    : `${fits.length} are for ${formatPlatform(wanted)}`;
  throw new ShoalError(`${label} holds ${what}; ${why}: ${shown.join(", ")}`, {
    hint: named.length > 0 || fits.length === 0
      ? "choose one with --platform"
      : "give the name of one of them as NAME[:TAG]",
  });
}

/** A name from an archive: a full reference, or a bare tag as OCI layouts often use. */
function nameMatches(name: string, ref: ImageReference): boolean {
  if (name === ref.tag) return true;
  try {
    return referenceKey(parseReference(name)) === referenceKey(ref);
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------
// docker-archive

async function dockerCandidates(contents: ArchiveContents, manifest: Member): Promise<Candidate[]> {
  const entries = parseWith(
    dockerManifestSchema,
    await contents.json(manifest, "manifest.json"),
    contents.label,
    "manifest.json",
  );
  return entries.map((entry) => {
    let config: Promise<{ digest: string; config: ImageConfig }> | undefined;
    const readConfig = () => config ??= dockerConfig(contents, entry.Config);
    return {
      names: entry.RepoTags ?? [],
      fallbackName: `config ${entry.Config}`,
      platforms: async () => [platformOf((await readConfig()).config)],
      load: async () => {
        const { digest, config } = await readConfig();
        const diffIds = diffIdsOf(config, entry.Layers.length, contents.label);
        const layers = entry.Layers.map((name, i): ArchiveLayer => {
          const member = contents.member(name);
          if (member === undefined) throw missing(contents.label, "manifest.json", name);
          return {
            path: member.path,
            digest: member.sha256,
            // Docker archives leave it out; the layer's magic bytes tell the compression.
            mediaType: "",
            size: member.size,
            diffId: diffIds[i]!,
          };
        });
        return {
          format: "docker-archive",
          configDigest: digest,
          config,
          platform: platformOf(config),
          layers,
        };
      },
    };
  });
}

/** The config of a docker-archive entry; `<hex>.json` names its own digest, so it is checked. */
async function dockerConfig(
  contents: ArchiveContents,
  name: string,
): Promise<{ digest: string; config: ImageConfig }> {
  const member = contents.member(name);
  if (member === undefined) throw missing(contents.label, "manifest.json", name);
  const bytes = await contents.bytes(member, name);
  const digest = digestOf(bytes);
  const claimed = /^([a-f0-9]{64})\.json$/.exec(name.split("/").pop() ?? "")?.[1];
  if (claimed !== undefined && `sha256:${claimed}` !== digest) {
    throw new ShoalError(
      `${contents.label}: config ${name} does not match its digest (its content hashes to ${digest})`,
      { hint: "the archive is corrupt or was tampered with; save the image again" },
    );
  }
  return { digest, config: parseImageConfig(bytes, `${contents.label}: ${name}`) };
}

// ---------------------------------------------------------------------------
// oci-archive

const INDEX_TYPES: string[] = [mediaTypes.ociIndex, mediaTypes.dockerManifestList];
const MANIFEST_TYPES: string[] = [mediaTypes.ociManifest, mediaTypes.dockerManifest];

async function ociCandidates(contents: ArchiveContents, index: Member): Promise<Candidate[]> {
  const label = contents.label;
  const layout = contents.member("oci-layout");
  if (layout !== undefined) {
    parseWith(ociLayoutSchema, await contents.json(layout, "oci-layout"), label, "oci-layout");
  }
  const top = parseWith(
    imageIndexSchema,
    await contents.json(index, "index.json"),
    label,
    "index.json",
  );
  // Attestations and other artifacts may sit beside the images; they are not candidates.
  return top.manifests
    .filter((d) => INDEX_TYPES.includes(d.mediaType) || MANIFEST_TYPES.includes(d.mediaType))
    .map((d) => ({
      names: NAME_ANNOTATIONS.map((a) => d.annotations?.[a]).filter((n) => n !== undefined),
      fallbackName: d.digest,
      platforms: async () => {
        if (d.platform) return [d.platform];
        if (INDEX_TYPES.includes(d.mediaType)) {
          return (await ociIndex(contents, d)).manifests.flatMap((m) => m.platform ?? []);
        }
        const { config } = await ociManifest(contents, d);
        return [platformOf(config)];
      },
      load: async (wanted) => {
        if (!INDEX_TYPES.includes(d.mediaType)) {
          return { ...(await ociManifest(contents, d)), digest: d.digest };
        }
        const chosen = selectManifest(await ociIndex(contents, d), wanted, label);
        if (!MANIFEST_TYPES.includes(chosen.mediaType)) {
          throw new ShoalError(
            `${label}: index ${d.digest} names ${chosen.digest} of type ${
              JSON.stringify(chosen.mediaType)
            }, not an image manifest`,
          );
        }
        return {
          ...(await ociManifest(contents, chosen)),
          digest: d.digest,
          manifestDigest: chosen.digest,
        };
      },
    }));
}

async function ociIndex(contents: ArchiveContents, d: Descriptor) {
  const what = `index ${d.digest}`;
  const bytes = await contents.bytes(blobOf(contents, d, "index.json"), what);
  return parseWith(imageIndexSchema, parseJson(bytes, contents.label, what), contents.label, what);
}

async function ociManifest(
  contents: ArchiveContents,
  d: Descriptor,
): Promise<Omit<ArchiveImage, "digest" | "manifestDigest">> {
  const label = contents.label;
  const what = `manifest ${d.digest}`;
  const bytes = await contents.bytes(blobOf(contents, d, "index.json"), what);
  const manifest = parseWith(imageManifestSchema, parseJson(bytes, label, what), label, what);
  const described = imageLayers(manifest, `${label}: ${what}`);
  const configBlob = blobOf(contents, manifest.config, what);
  const config = parseImageConfig(
    await contents.bytes(configBlob, `config ${manifest.config.digest}`),
    `${label}: config ${manifest.config.digest}`,
  );
  const diffIds = diffIdsOf(config, described.length, label);
  return {
    format: "oci-archive",
    configDigest: manifest.config.digest,
    config,
    platform: platformOf(config),
    layers: described.map((l, i) => ({
      path: blobOf(contents, l, what).path,
      digest: l.digest,
      mediaType: l.mediaType,
      size: l.size,
      diffId: diffIds[i]!,
    })),
  };
}

/** The member holding a descriptor's blob, of the size the descriptor says. */
function blobOf(contents: ArchiveContents, d: Descriptor, namedBy: string): Member {
  const member = contents.blob(d.digest);
  if (member === undefined) throw missing(contents.label, namedBy, `blob ${d.digest}`);
  if (member.size !== d.size) {
    throw new ShoalError(
      `${contents.label}: blob ${d.digest} has ${member.size} bytes, ${namedBy} says ${d.size}`,
    );
  }
  return member;
}

// ---------------------------------------------------------------------------
// both

function missing(label: string, namedBy: string, what: string): ShoalError {
  return new ShoalError(
    `${label}: ${namedBy} names ${what}, which is not in the archive`,
    { hint: "the archive is incomplete; save the image again" },
  );
}

function parseJson(bytes: Uint8Array, label: string, what: string): unknown {
  try {
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw new ShoalError(`${label}: ${what} is not valid JSON`);
  }
}

function parseWith<S extends z.ZodMiniType>(
  schema: S,
  doc: unknown,
  label: string,
  what: string,
): z.output<S> {
  const r = schema.safeParse(doc);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  const where = issue?.path.length ? ` at ${issue.path.join(".")}` : "";
  throw new ShoalError(`${label}: invalid ${what}${where}: ${issue?.message ?? "unknown problem"}`);
}

function diffIdsOf(config: ImageConfig, layers: number, label: string): string[] {
  const ids = config.rootfs?.diff_ids;
  if (ids === undefined || ids.length !== layers) {
    throw new ShoalError(
      `${label}: the image config lists ${
        ids?.length ?? 0
      } layers (rootfs.diff_ids), its manifest ${layers}`,
    );
  }
  return ids;
}

/** The platform a config declares; "unknown" where it is silent (a few old tools). */
function platformOf(config: ImageConfig): Platform {
  return {
    os: config.os || "unknown",
    architecture: config.architecture || "unknown",
    ...(config.variant ? { variant: config.variant } : {}),
  };
}

/**
 * Checks the layers of a docker-archive against the config's rootfs.diff_ids:
 * there nothing else vouches for them. An uncompressed layer's digest is its
 * diff ID; a compressed one is decompressed and hashed. (An OCI archive's
 * layers were checked against the digests its manifest gives.)
 */
export async function verifyDiffIds(
  image: ArchiveImage,
  label: string,
  budget: ByteBudget,
): Promise<void> {
  if (image.format !== "docker-archive") return;
  for (const layer of image.layers) {
    if (layer.digest === layer.diffId) continue;
    // Read to the end: a stream cancelled before its file is open fails later, uncaught.
    const { stream } = await openLayer(layer, budget);
    const hash = createHash("sha256");
    for await (const chunk of stream) hash.update(chunk);
    const got = `sha256:${hash.digest("hex")}`;
    if (got !== layer.diffId) {
      throw new ShoalError(
        `${label}: ${layerLabel(layer)} does not match the image config ` +
          `(its content hashes to ${got}, rootfs.diff_ids says ${layer.diffId})`,
        { hint: "the archive is corrupt or was tampered with; save the image again" },
      );
    }
  }
}
