/**
 * The registry client: resolves a reference to one platform's image
 * (manifest, config, layers) and downloads blobs into a content-addressed
 * cache, through mirrors first and then the registry itself.
 */
import type { SiteConfig } from "../../config/schema.ts";
import { ShoalError } from "../../errors.ts";
import { type Logger, silentLogger } from "../../log.ts";
import { formatReference, type ImageReference, registryApiHost } from "../reference.ts";
import { Authorizer } from "./auth.ts";
import { type BlobProgress, type BlobSource, downloadBlob, mapBounded } from "./blobs.ts";
import {
  createCredentialProvider,
  type Credential,
  type CredentialProvider,
} from "./credentials.ts";
import { parseDigest } from "./digest.ts";
import { digestOf } from "./hash.ts";
import {
  type Descriptor,
  type ImageConfig,
  imageLayers,
  type ImageManifest,
  type LayerDescriptor,
  manifestAccept,
  parseImageConfig,
  parseManifest,
} from "./manifest.ts";
import {
  formatPlatform,
  hostPlatform,
  type Platform,
  platformMatches,
  selectManifest,
} from "./platform.ts";
import { errorFromResponse, networkError, RegistryError } from "./responses.ts";
import { type RetryPolicy, withRetries } from "./retry.ts";
import { Transport } from "./transport.ts";
import {
  SIGNATURE_ANNOTATION,
  SIGNATURE_LAYER_TYPE,
  signatureTag,
  type SignedPayload,
} from "../signature/cosign.ts";

/** containerd's limit: a manifest is a small JSON document, never worth more memory. */
const maxManifestBytes = 4 * 1024 * 1024;
const maxConfigBytes = 64 * 1024 * 1024;
/** A cosign payload is a few hundred bytes of JSON. */
const maxSignaturePayloadBytes = 64 * 1024;
/** An index may point at another index; deeper nesting is refused rather than followed forever. */
const maxIndexDepth = 4;

export interface RegistryClientOptions {
  config: Pick<SiteConfig, "registries" | "pull">;
  /** Default: Docker/Podman/shoal credential files and helpers of the current user. */
  credentials?: CredentialProvider;
  logger?: Logger;
  /** `--tls-verify=false`: unverified HTTPS, then plain HTTP, for every registry. */
  tlsVerify?: boolean;
  /** First retry delay, doubled per retry. Default 1000 ms. */
  retryBaseDelayMs?: number;
  /** Longest wait for an answer or for the next chunk of a body. Default 30 s. */
  timeoutMs?: number;
}

export interface ResolveOptions {
  /** Wanted platform; default the host's. An explicit one must match even a single-platform image. */
  platform?: Platform;
}

export interface ResolvedImage {
  reference: ImageReference;
  /** The registry digest of what the reference names (the index for a multi-platform image). */
  digest: string;
  /** The digest of the chosen platform's image manifest (equal to `digest` without an index). */
  manifestDigest: string;
  manifest: ImageManifest;
  /** The manifest exactly as served (its sha256 is `manifestDigest`). */
  manifestBytes: Uint8Array;
  platform: Platform;
  configDigest: string;
  config: ImageConfig;
  configBytes: Uint8Array;
  layers: LayerDescriptor[];
  /** Where the manifest came from: a mirror URL or the registry host; blobs are fetched there first. */
  source: string;
}

export interface FetchBlobsOptions {
  /** The content-addressed cache: blobs land in `<cacheDir>/sha256/<hex>`. */
  cacheDir: string;
  onProgress?: (p: BlobProgress) => void;
  signal?: AbortSignal;
}

/** A place to pull from: a mirror (with an optional namespace prefix) or the registry itself. */
interface Endpoint {
  /** `host[:port]`: TLS settings, credentials and tokens are per host. */
  host: string;
  /** Fixed scheme for mirrors given as URLs; undefined lets the transport decide. */
  scheme?: "http" | "https";
  /** Namespace prefix of a mirror (`https://mirror/prefix` serves `prefix/<repository>`). */
  prefix: string;
  mirror: boolean;
  label: string;
}

export interface RegistryClient {
  resolveManifest(ref: ImageReference, options?: ResolveOptions): Promise<ResolvedImage>;
  /** The digest the registry reports for a reference (HEAD, cheap), or undefined if it says none. */
  headDigest(ref: ImageReference): Promise<string | undefined>;
  /** Downloads blobs (layers of a resolved image) in parallel; returns their cache paths in order. */
  fetchBlobs(
    image: Pick<ResolvedImage, "reference" | "source"> & { layers: Descriptor[] },
    options: FetchBlobsOptions,
  ): Promise<string[]>;
  /**
   * The cosign signatures stored for `digest` in the reference's repository
   * (signature.ts's tag), each payload fetched and checked against its
   * digest; none when the registry has no such tag.
   */
  fetchSignatures(ref: ImageReference, digest: string): Promise<SignedPayload[]>;
  /** Checks credentials against a registry before `shoal login` stores them. */
  verifyLogin(registry: string, credential: Credential): Promise<void>;
  close(): void;
  [Symbol.dispose](): void;
}

export function createRegistryClient(options: RegistryClientOptions): RegistryClient {
  return new Client(options);
}

class Client implements RegistryClient {
  readonly #transport: Transport;
  readonly #auth: Authorizer;
  readonly #logger: Logger;
  readonly #retry: RetryPolicy;

  constructor(readonly options: RegistryClientOptions) {
    const { registries, pull } = options.config;
    this.#logger = options.logger ?? silentLogger;
    this.#transport = new Transport({
      caFiles: registries.ca,
      insecure: registries.insecure,
      tlsVerify: options.tlsVerify ?? true,
      timeoutMs: options.timeoutMs ?? 30_000,
    });
    this.#auth = new Authorizer({
      transport: this.#transport,
      credentials: options.credentials ?? createCredentialProvider({ logger: this.#logger }),
      logger: this.#logger,
    });
    this.#retry = { retries: pull.retries, baseDelayMs: options.retryBaseDelayMs ?? 1000 };
  }

  close(): void {
    this.#transport.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #endpoints(registry: string): Endpoint[] {
    const host = registryApiHost(registry);
    const mirrors = this.options.config.registries.mirrors;
    const configured = mirrors[registry] ?? mirrors[host] ?? [];
    const out: Endpoint[] = configured.map((m) => {
      const url = new URL(m);
      return {
        host: url.host,
        scheme: url.protocol === "http:" ? "http" : "https",
        prefix: url.pathname.replace(/^\/+|\/+$/g, ""),
        mirror: true,
        label: m,
      };
    });
    out.push({ host, prefix: "", mirror: false, label: registry });
    return out;
  }

  /** A request to an endpoint's API with authentication: token up front if known, one renewal on 401. */
  async #request(
    ep: Endpoint,
    repository: string,
    path: string,
    init: { method?: "GET" | "HEAD"; headers?: Record<string, string> },
    what: string,
  ): Promise<Response> {
    const repo = ep.prefix === "" ? repository : `${ep.prefix}/${repository}`;
    const scope = `repository:${repo}:pull`;
    const base = ep.scheme
      ? new URL(`${ep.scheme}://${ep.host}`)
      : await this.#transport.baseUrl(ep.host);
    const url = new URL(`/v2/${repo}/${path}`, base);
    const send = async (authorization: string | undefined) => {
      const headers = new Headers(init.headers);
      if (authorization !== undefined) headers.set("authorization", authorization);
      try {
        return await this.#transport.send(url, { method: init.method, headers });
      } catch (err) {
        throw networkError(err, what, ep.label);
      }
    };
    let res = await send(await this.#auth.header(ep.host, scope, repo));
    if (res.status === 401) {
      const renewed = await this.#auth.renew(ep.host, scope, repo, res);
      if (renewed !== undefined) {
        await res.body?.cancel();
        res = await send(renewed);
      }
    }
    return res;
  }

  async #readBounded(
    res: Response,
    limit: number,
    what: string,
    label: string,
  ): Promise<Uint8Array> {
    const declared = Number(res.headers.get("content-length") ?? "0");
    if (declared > limit) {
      await res.body?.cancel();
      throw new ShoalError(
        `${what}: ${label} sent ${declared} bytes, more than the ${limit} allowed`,
      );
    }
    const chunks: Uint8Array[] = [];
    let size = 0;
    try {
      for await (const chunk of res.body ?? []) {
        size += chunk.length;
        if (size > limit) {
          await res.body?.cancel().catch(() => {});
          throw new ShoalError(`${what}: ${label} sent more than the ${limit} bytes allowed`);
        }
        chunks.push(chunk);
      }
    } catch (err) {
      if (err instanceof ShoalError) throw err;
      throw networkError(err, what, label);
    }
    const out = new Uint8Array(size);
    let at = 0;
    for (const c of chunks) {
      out.set(c, at);
      at += c.length;
    }
    return out;
  }

  /** Fetches a manifest by tag or digest; the digest is checked whenever one is known. */
  async #fetchManifest(ep: Endpoint, ref: ImageReference, selector: string, what: string) {
    return await withRetries(
      this.#retry,
      async () => {
        const res = await this.#request(ep, ref.repository, `manifests/${selector}`, {
          headers: { accept: manifestAccept },
        }, what);
        if (!res.ok) throw await errorFromResponse(res, what, ep.label);
        const bytes = await this.#readBounded(res, maxManifestBytes, what, ep.label);
        const expected = selector.includes(":")
          ? selector
          : res.headers.get("docker-content-digest");
        let digest = digestOf(bytes);
        if (expected !== null && expected !== "") {
          const { algorithm } = parseDigest(expected);
          const got = digestOf(bytes, algorithm);
          if (got !== expected) {
            throw new ShoalError(
              `${what}: the manifest ${ep.label} sent hashes to ${got}, not ${expected}`,
              { hint: "pull again; if it persists, the registry or a proxy serves corrupted data" },
            );
          }
          if (selector.includes(":")) digest = expected;
        }
        return {
          bytes,
          digest,
          parsed: parseManifest(bytes, res.headers.get("content-type"), what),
        };
      },
      (err, n, delay) =>
        this.#logger.verbose(`${(err as Error).message}; retry ${n} in ${delay} ms`),
    );
  }

  async #fetchConfig(ep: Endpoint, ref: ImageReference, desc: Descriptor, what: string) {
    if (desc.size > maxConfigBytes) {
      throw new ShoalError(`${what}: image configuration of ${desc.size} bytes is too large`);
    }
    return await this.#fetchSmallBlob(ep, ref, desc, `${what}: configuration ${desc.digest}`);
  }

  /** A blob read whole into memory: at most the size its descriptor says, checked against its digest. */
  async #fetchSmallBlob(ep: Endpoint, ref: ImageReference, desc: Descriptor, cwhat: string) {
    return await withRetries(this.#retry, async () => {
      const res = await this.#request(ep, ref.repository, `blobs/${desc.digest}`, {}, cwhat);
      if (!res.ok) throw await errorFromResponse(res, cwhat, ep.label);
      const bytes = await this.#readBounded(res, desc.size, cwhat, ep.label);
      const got = digestOf(bytes, parseDigest(desc.digest).algorithm);
      if (got !== desc.digest) {
        throw new ShoalError(`${cwhat}: the blob ${ep.label} sent hashes to ${got}`);
      }
      return bytes;
    });
  }

  async #resolveAt(
    ep: Endpoint,
    ref: ImageReference,
    options: ResolveOptions,
  ): Promise<ResolvedImage> {
    const what = `image ${formatReference(ref)}`;
    const wanted = options.platform ?? hostPlatform();
    const top = await this.#fetchManifest(ep, ref, ref.digest ?? ref.tag ?? "latest", what);
    let current = top;
    let chosen: Platform | undefined;
    for (let depth = 0; current.parsed.kind === "index"; depth++) {
      if (depth >= maxIndexDepth) throw new ShoalError(`${what}: image indexes nested too deeply`);
      const entry = selectManifest(current.parsed.index, wanted, what);
      chosen = entry.platform;
      current = await this.#fetchManifest(ep, ref, entry.digest, what);
    }
    const manifest = current.parsed.manifest;
    const layers = imageLayers(manifest, what);
    const configBytes = await this.#fetchConfig(ep, ref, manifest.config, what);
    const config = parseImageConfig(configBytes, what);
    const platform: Platform = chosen
      ? {
        os: chosen.os,
        architecture: chosen.architecture,
        ...(chosen.variant ? { variant: chosen.variant } : {}),
      }
      : {
        os: config.os ?? "unknown",
        architecture: config.architecture ?? "unknown",
        ...(config.variant ? { variant: config.variant } : {}),
      };
    if (!chosen && !platformMatches(platform, wanted)) {
      const msg = `${what} is for ${formatPlatform(platform)}, not ${formatPlatform(wanted)}`;
      if (options.platform) throw new ShoalError(msg, { hint: "it has no other platform" });
      this.#logger.warn(`${msg}; it may not run on this machine`);
    }
    return {
      reference: ref,
      digest: top.digest,
      manifestDigest: current.digest,
      manifest,
      manifestBytes: current.bytes,
      platform,
      configDigest: manifest.config.digest,
      config,
      configBytes,
      layers,
      source: ep.label,
    };
  }

  /** Tries each mirror in order, then the registry; a failing mirror is only logged. */
  async #viaEndpoints<T>(registry: string, fn: (ep: Endpoint) => Promise<T>): Promise<T> {
    const endpoints = this.#endpoints(registry);
    for (const ep of endpoints) {
      if (!ep.mirror) return await fn(ep);
      try {
        return await fn(ep);
      } catch (err) {
        this.#logger.verbose(
          `mirror ${ep.label} failed, trying the next source: ${(err as Error).message}`,
        );
      }
    }
    throw new Error("unreachable: the registry itself is always the last endpoint");
  }

  resolveManifest(ref: ImageReference, options: ResolveOptions = {}): Promise<ResolvedImage> {
    return this.#viaEndpoints(ref.registry, (ep) => this.#resolveAt(ep, ref, options));
  }

  fetchSignatures(ref: ImageReference, digest: string): Promise<SignedPayload[]> {
    const what = `signatures of ${formatReference(ref)}`;
    return this.#viaEndpoints(ref.registry, async (ep) => {
      let found;
      try {
        found = await this.#fetchManifest(ep, ref, signatureTag(digest), what);
      } catch (err) {
        if (err instanceof RegistryError && err.status === 404) return [];
        throw err;
      }
      if (found.parsed.kind !== "manifest") return [];
      const out: SignedPayload[] = [];
      for (const layer of found.parsed.manifest.layers) {
        const signature = layer.annotations?.[SIGNATURE_ANNOTATION];
        if (layer.mediaType !== SIGNATURE_LAYER_TYPE || typeof signature !== "string") continue;
        if (layer.size > maxSignaturePayloadBytes) continue;
        const payload = await this.#fetchSmallBlob(ep, ref, layer, `${what}: ${layer.digest}`);
        out.push({ payload, signature });
      }
      return out;
    });
  }

  headDigest(ref: ImageReference): Promise<string | undefined> {
    if (ref.digest !== undefined) return Promise.resolve(ref.digest);
    const what = `image ${formatReference(ref)}`;
    return this.#viaEndpoints(ref.registry, (ep) =>
      withRetries(this.#retry, async () => {
        const res = await this.#request(ep, ref.repository, `manifests/${ref.tag ?? "latest"}`, {
          method: "HEAD",
          headers: { accept: manifestAccept },
        }, what);
        await res.body?.cancel();
        if (!res.ok) throw await errorFromResponse(res, what, ep.label);
        return res.headers.get("docker-content-digest") ?? undefined;
      }));
  }

  #blobSources(
    image: Pick<ResolvedImage, "reference" | "source">,
    blob: Descriptor,
    endpoints: Endpoint[],
  ): BlobSource[] {
    const ref = image.reference;
    const sources: BlobSource[] = endpoints.map((ep) => ({
      name: ep.label,
      primary: ep.label === image.source || !ep.mirror,
      open: async (b, offset) => {
        const what = `blob ${b.digest} of ${formatReference(ref)}`;
        const headers: Record<string, string> = offset > 0 ? { range: `bytes=${offset}-` } : {};
        const res = await this.#request(ep, ref.repository, `blobs/${b.digest}`, { headers }, what);
        if (!res.ok) throw await errorFromResponse(res, what, ep.label);
        return res;
      },
    }));
    // Foreign and non-distributable layers may live only at the URLs the manifest gives.
    for (const u of blob.urls ?? []) {
      let url: URL;
      try {
        url = new URL(u);
      } catch {
        continue;
      }
      if (url.protocol !== "https:" && url.protocol !== "http:") continue;
      sources.push({
        name: url.host,
        primary: false,
        open: async (b, offset) => {
          const what = `blob ${b.digest} from ${url.href}`;
          let res: Response;
          try {
            res = await this.#transport.send(
              url,
              offset > 0 ? { headers: { range: `bytes=${offset}-` } } : {},
            );
          } catch (err) {
            throw networkError(err, what, url.host);
          }
          if (!res.ok) throw await errorFromResponse(res, what, url.host);
          return res;
        },
      });
    }
    return sources;
  }

  async fetchBlobs(
    image: Pick<ResolvedImage, "reference" | "source"> & { layers: Descriptor[] },
    options: FetchBlobsOptions,
  ): Promise<string[]> {
    const all = this.#endpoints(image.reference.registry);
    // Mirrors before the one that served the manifest already failed: skip them.
    const from = all.findIndex((ep) => ep.label === image.source);
    const endpoints = from < 0 ? all : all.slice(from);
    const unique = [...new Map(image.layers.map((l) => [l.digest, l])).values()];
    const paths = await mapBounded(
      unique,
      this.options.config.pull.parallelDownloads,
      (blob, signal) =>
        downloadBlob(blob, this.#blobSources(image, blob, endpoints), {
          cacheDir: options.cacheDir,
          retry: this.#retry,
          onProgress: options.onProgress,
          onRetry: (m) => this.#logger.verbose(m),
          signal,
        }),
      options.signal,
    );
    const byDigest = new Map(unique.map((b, i) => [b.digest, paths[i]!]));
    return image.layers.map((l) => byDigest.get(l.digest)!);
  }

  async verifyLogin(registry: string, credential: Credential): Promise<void> {
    const host = registryApiHost(registry);
    const auth = new Authorizer({
      transport: this.#transport,
      credentials: { get: () => Promise.resolve(credential) },
      logger: this.#logger,
    });
    const what = `login to ${registry}`;
    const url = new URL("/v2/", await this.#transport.baseUrl(host));
    const send = async (authorization?: string) => {
      try {
        return await this.#transport.send(url, authorization ? { headers: { authorization } } : {});
      } catch (err) {
        throw networkError(err, what, registry);
      }
    };
    let res = await send();
    if (res.status === 401) {
      const header = await auth.renew(host, "", "", res);
      await res.body?.cancel();
      if (header === undefined) {
        throw new RegistryError(
          `${what}: the registry asks for an authentication shoal does not support`,
          401,
          false,
        );
      }
      res = await send(header);
    }
    if (!res.ok) {
      const err = await errorFromResponse(res, what, registry);
      if (res.status === 401) {
        throw new RegistryError(`${what}: the registry rejected the credentials`, 401, false, {
          cause: err,
          hint: "check the username and the password or token",
        });
      }
      throw err;
    }
    await res.body?.cancel();
  }
}
