/**
 * Test images without Docker: layers from tar entries (tar.ts), image
 * configs, OCI or Docker v2 manifests and indexes, all in memory, pushed to a
 * registry with the distribution API. This is test tooling, deliberately
 * independent of the engine's registry client so that a bug there cannot hide
 * itself in both the pushed and the pulled image.
 */
import { createHash } from "node:crypto";
import { constants, gzipSync, zstdCompressSync } from "node:zlib";
import { tarArchive, type TarEntry } from "./tar.ts";

export type Compression = "gzip" | "zstd" | "none";
export type ManifestFormat = "oci" | "docker";

export const MEDIA_TYPES = {
  oci: {
    manifest: "application/vnd.oci.image.manifest.v1+json",
    index: "application/vnd.oci.image.index.v1+json",
    config: "application/vnd.oci.image.config.v1+json",
    layer: {
      none: "application/vnd.oci.image.layer.v1.tar",
      gzip: "application/vnd.oci.image.layer.v1.tar+gzip",
      zstd: "application/vnd.oci.image.layer.v1.tar+zstd",
    },
  },
  docker: {
    manifest: "application/vnd.docker.distribution.manifest.v2+json",
    index: "application/vnd.docker.distribution.manifest.list.v2+json",
    config: "application/vnd.docker.container.image.v1+json",
    // Docker's schema 2 has no zstd layer type.
    layer: {
      none: "application/vnd.docker.image.rootfs.diff.tar",
      gzip: "application/vnd.docker.image.rootfs.diff.tar.gzip",
      zstd: undefined,
    },
  },
} as const;

/** Content-addressed bytes, as the registry stores them. */
export interface Blob {
  mediaType: string;
  /** "sha256:<hex>" of `data`. */
  digest: string;
  size: number;
  data: Uint8Array;
}

export interface Layer extends Blob {
  /** Digest of the uncompressed tar: what the config's rootfs.diff_ids lists. */
  diffId: string;
}

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export interface ImageSpec {
  /** Default: the host's (linux/amd64 or linux/arm64). */
  platform?: Platform;
  format?: ManifestFormat;
  env?: string[];
  entrypoint?: string[];
  cmd?: string[];
  workingDir?: string;
  user?: string;
  labels?: Record<string, string>;
  /** RFC 3339; a fixed default keeps config digests reproducible. */
  created?: string;
}

export interface Image {
  format: ManifestFormat;
  platform: Platform;
  config: Blob;
  layers: Layer[];
  /** The image manifest; its digest is the image's registry digest. */
  manifest: Blob;
}

/** A multi-platform image: an OCI index or a Docker manifest list. */
export interface ImageIndex {
  format: ManifestFormat;
  images: Image[];
  manifest: Blob;
}

const DEFAULT_CREATED = "2023-11-14T22:13:20Z";
const encoder = new TextEncoder();

export function sha256(data: Uint8Array): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

export function blobOf(mediaType: string, data: Uint8Array): Blob {
  return { mediaType, digest: sha256(data), size: data.length, data };
}

function descriptor(blob: Blob): { mediaType: string; digest: string; size: number } {
  return { mediaType: blob.mediaType, digest: blob.digest, size: blob.size };
}

export function hostPlatform(): Platform {
  const architecture = Deno.build.arch === "aarch64" ? "arm64" : "amd64";
  return { os: "linux", architecture };
}

export function compress(data: Uint8Array, compression: Compression): Uint8Array {
  switch (compression) {
    case "gzip":
      return gzipSync(data);
    case "zstd":
      return zstdCompressSync(data, { params: { [constants.ZSTD_c_compressionLevel]: 3 } });
    case "none":
      return data;
  }
}

/**
 * A layer from tar entries, or from a ready tar (hostile or truncated archives
 * are made by editing the bytes of `tarArchive`).
 */
export function makeLayer(
  content: TarEntry[] | Uint8Array,
  options: { compression?: Compression; format?: ManifestFormat } = {},
): Layer {
  const compression = options.compression ?? "gzip";
  const mediaType = MEDIA_TYPES[options.format ?? "oci"].layer[compression];
  if (mediaType === undefined) {
    throw new Error(`${options.format} manifests have no ${compression} layer media type`);
  }
  const tar = content instanceof Uint8Array ? content : tarArchive(content);
  return { ...blobOf(mediaType, compress(tar, compression)), diffId: sha256(tar) };
}

/** The config and manifest of an image made of `layers` (bottom first). */
export function makeImage(layers: Layer[], spec: ImageSpec = {}): Image {
  const format = spec.format ?? "oci";
  const platform = spec.platform ?? hostPlatform();
  const created = spec.created ?? DEFAULT_CREATED;
  const runConfig: Record<string, unknown> = {};
  if (spec.env) runConfig.Env = spec.env;
  if (spec.entrypoint) runConfig.Entrypoint = spec.entrypoint;
  if (spec.cmd) runConfig.Cmd = spec.cmd;
  if (spec.workingDir) runConfig.WorkingDir = spec.workingDir;
  if (spec.user) runConfig.User = spec.user;
  if (spec.labels) runConfig.Labels = spec.labels;
  const config = blobOf(
    MEDIA_TYPES[format].config,
    encoder.encode(JSON.stringify({
      created,
      architecture: platform.architecture,
      os: platform.os,
      ...(platform.variant ? { variant: platform.variant } : {}),
      config: runConfig,
      rootfs: { type: "layers", diff_ids: layers.map((l) => l.diffId) },
      history: layers.map(() => ({ created, created_by: "shoal test support" })),
    })),
  );
  const manifest = blobOf(
    MEDIA_TYPES[format].manifest,
    encoder.encode(JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_TYPES[format].manifest,
      config: descriptor(config),
      layers: layers.map(descriptor),
    })),
  );
  return { format, platform, config, layers, manifest };
}

/** An index (OCI) or manifest list (Docker) over images of different platforms. */
export function makeIndex(images: Image[], format: ManifestFormat = "oci"): ImageIndex {
  const manifest = blobOf(
    MEDIA_TYPES[format].index,
    encoder.encode(JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_TYPES[format].index,
      manifests: images.map((img) => ({
        ...descriptor(img.manifest),
        platform: {
          architecture: img.platform.architecture,
          os: img.platform.os,
          ...(img.platform.variant ? { variant: img.platform.variant } : {}),
        },
      })),
    })),
  );
  return { format, images, manifest };
}

// ---------------------------------------------------------------------------
// Push

/** Where to push and as whom; a TestRegistry fits, or `{ ...reg, username: "other", ... }`. */
export interface PushTarget {
  url: string;
  caFile?: string;
  username?: string;
  password?: string;
}

/** A registry or token server refusal, with the status tests assert on. */
export class RegistryHttpError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
    this.name = "RegistryHttpError";
  }
}

function challengeParams(header: string): Record<string, string> {
  const params: Record<string, string> = {};
  for (const m of header.matchAll(/(\w+)="([^"]*)"/g)) params[m[1] ?? ""] = m[2] ?? "";
  return params;
}

/**
 * One push's HTTP: answers a 401 once per challenge with basic credentials
 * or a bearer token for exactly the scopes this push needs, then reuses it.
 */
class PushSession {
  #authorization: string | undefined;
  readonly #client: Deno.HttpClient;

  constructor(readonly target: PushTarget, readonly scopes: string[], caCert: string | undefined) {
    this.#client = Deno.createHttpClient(caCert ? { caCerts: [caCert] } : {});
  }

  close(): void {
    this.#client.close();
  }

  async fetch(method: string, url: string, init: RequestInit = {}): Promise<Response> {
    for (let attempt = 0;; attempt++) {
      const headers = new Headers(init.headers);
      if (this.#authorization) headers.set("authorization", this.#authorization);
      const res = await fetch(url, { ...init, method, headers, client: this.#client });
      const challenge = res.headers.get("www-authenticate");
      if (res.status !== 401 || attempt > 0 || challenge === null) return res;
      await res.body?.cancel();
      this.#authorization = await this.#authorize(challenge);
    }
  }

  #basic(): string | undefined {
    const { username, password } = this.target;
    return username === undefined ? undefined : `Basic ${btoa(`${username}:${password ?? ""}`)}`;
  }

  async #authorize(challenge: string): Promise<string | undefined> {
    if (/^basic\b/i.test(challenge)) return this.#basic();
    const { realm, service } = challengeParams(challenge);
    if (!realm) throw new Error(`unexpected challenge: ${challenge}`);
    const url = new URL(realm);
    if (service) url.searchParams.set("service", service);
    for (const s of this.scopes) url.searchParams.append("scope", s);
    const basic = this.#basic();
    const res = await fetch(url, {
      headers: basic ? { authorization: basic } : {},
      client: this.#client,
    });
    if (!res.ok) throw new RegistryHttpError(res.status, `token server: ${await res.text()}`);
    const body = await res.json() as { token?: string; access_token?: string };
    return `Bearer ${body.token ?? body.access_token}`;
  }
}

async function expect(res: Response, status: number, what: string): Promise<void> {
  if (res.status === status) {
    await res.body?.cancel();
    return;
  }
  throw new RegistryHttpError(res.status, `${what}: HTTP ${res.status} ${await res.text()}`);
}

async function pushBlob(
  session: PushSession,
  base: string,
  blob: Blob,
  mountFrom: string | undefined,
): Promise<void> {
  const head = await session.fetch("HEAD", `${base}/blobs/${blob.digest}`);
  await head.body?.cancel();
  if (head.status === 200) return;
  const start = new URL(`${base}/blobs/uploads/`);
  if (mountFrom) {
    start.searchParams.set("mount", blob.digest);
    start.searchParams.set("from", mountFrom);
  }
  const res = await session.fetch("POST", start.href);
  if (res.status === 201) {
    await res.body?.cancel();
    return;
  }
  await expect(res, 202, `start upload of ${blob.digest}`);
  const location = new URL(res.headers.get("location") ?? "", start);
  location.searchParams.set("digest", blob.digest);
  const put = await session.fetch("PUT", location.href, {
    headers: { "content-type": "application/octet-stream" },
    body: blob.data as Uint8Array<ArrayBuffer>,
  });
  await expect(put, 201, `upload of ${blob.digest}`);
}

async function pushManifest(session: PushSession, base: string, ref: string, manifest: Blob) {
  const res = await session.fetch("PUT", `${base}/manifests/${ref}`, {
    headers: { "content-type": manifest.mediaType },
    body: manifest.data as Uint8Array<ArrayBuffer>,
  });
  await expect(res, 201, `manifest ${ref}`);
  const digest = res.headers.get("docker-content-digest");
  if (digest !== manifest.digest) {
    throw new Error(`registry stored manifest ${ref} as ${digest}, expected ${manifest.digest}`);
  }
}

/**
 * Pushes an image or index to `repository` and tags it `tag` (by digest only
 * when `tag` is undefined). Returns the manifest digest. `mountFrom` names a
 * repository of the same registry to mount existing blobs from.
 */
export async function pushImage(
  target: PushTarget,
  repository: string,
  tag: string | undefined,
  image: Image | ImageIndex,
  options: { mountFrom?: string } = {},
): Promise<string> {
  const scopes = [`repository:${repository}:pull,push`];
  if (options.mountFrom) scopes.push(`repository:${options.mountFrom}:pull`);
  const caCert = target.caFile ? await Deno.readTextFile(target.caFile) : undefined;
  const session = new PushSession(target, scopes, caCert);
  const base = `${target.url}/v2/${repository}`;
  try {
    const images = "images" in image ? image.images : [image];
    for (const img of images) {
      for (const blob of [...img.layers, img.config]) {
        await pushBlob(session, base, blob, options.mountFrom);
      }
      if ("images" in image) await pushManifest(session, base, img.manifest.digest, img.manifest);
    }
    await pushManifest(session, base, tag ?? image.manifest.digest, image.manifest);
    return image.manifest.digest;
  } finally {
    session.close();
  }
}

// ---------------------------------------------------------------------------
// busybox

export interface BusyboxOptions {
  /** How applets point at /bin/busybox (default "symlink"). */
  links?: "symlink" | "hardlink";
  compression?: Compression;
  /** Added on top, in the same layer. */
  extraEntries?: TarEntry[];
  /** Config and platform; Cmd defaults to ["sh"] and PATH is set. */
  spec?: ImageSpec;
}

const BUSYBOX = "/bin/busybox";
let busyboxApplets: string[] | undefined;

/** Applet paths as busybox-static installs them (bin/sh, usr/bin/awk, ...). */
function applets(): string[] {
  if (!busyboxApplets) {
    const out = new Deno.Command(BUSYBOX, { args: ["--list-full"] }).outputSync();
    busyboxApplets = new TextDecoder().decode(out.stdout).split("\n")
      .filter((p) => p.includes("/") && p !== "bin/busybox");
  }
  return busyboxApplets;
}

/**
 * The tar entries of a minimal busybox system: /bin/busybox from the host's
 * busybox-static, every applet linked to it, /etc/passwd and /etc/group, and
 * /etc/platform naming the platform the image claims (so a pull test can
 * tell which member of an index it got, the binary being the host's).
 */
export function busyboxEntries(
  platform: Platform = hostPlatform(),
  links: "symlink" | "hardlink" = "symlink",
): TarEntry[] {
  const dirs = ["bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "dev", "proc", "sys", "home"];
  const entries: TarEntry[] = dirs.map((path) => ({ type: "dir", path }));
  entries.push(
    { type: "dir", path: "root", mode: 0o700 },
    { type: "dir", path: "tmp", mode: 0o1777 },
    { type: "file", path: "bin/busybox", mode: 0o755, content: Deno.readFileSync(BUSYBOX) },
    {
      type: "file",
      path: "etc/passwd",
      content:
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    },
    { type: "file", path: "etc/group", content: "root:x:0:\nnogroup:x:65534:\n" },
    {
      type: "file",
      path: "etc/platform",
      content: [platform.os, platform.architecture, platform.variant].filter(Boolean).join("/") +
        "\n",
    },
  );
  for (const path of applets()) {
    entries.push(
      links === "symlink"
        ? { type: "symlink", path, target: "/bin/busybox" }
        : { type: "hardlink", path, target: "bin/busybox", mode: 0o755 },
    );
  }
  return entries;
}

/** A one-layer busybox image (about 1 MB compressed), ready for pushImage. */
export function busyboxImage(options: BusyboxOptions = {}): Image {
  const spec = options.spec ?? {};
  const platform = spec.platform ?? hostPlatform();
  const layer = makeLayer(
    [...busyboxEntries(platform, options.links), ...options.extraEntries ?? []],
    { compression: options.compression, format: spec.format },
  );
  return makeImage([layer], {
    env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
    cmd: ["sh"],
    ...spec,
    platform,
  });
}
