/**
 * The converter: the trusted side of a publish (docs/design/store.md). It
 * runs as the store's owner, started by the setuid helper (or by the owner
 * directly), reads one image from a byte stream whose sender it does not
 * trust, and stores it only when every byte checks out against the digest it
 * was asked to store: the manifest against that digest, the config and each
 * layer against the manifest, an index (when given) must list that digest,
 * and signatures against the site's keys where its policy wants them.
 *
 * The stream (stream.ts reads it):
 *   SHOAL-PUBLISH 1
 *   name REGISTRY/REPOSITORY          where the sender pulled it (policy and signatures)
 *   index LEN\n BYTES                 LEN 0: no index
 *   manifest LEN\n BYTES
 *   config LEN\n BYTES
 *   signatures N\n (LEN BASE64\n PAYLOAD){N}
 *   -- the converter answers "exists", or "send" once it holds the claim --
 *   the layers' bytes, each exactly its size, in manifest order
 * and the converter's last line is "published SIZE" (or "exists").
 *
 * Layers are copied into the claim's work directory while they are hashed,
 * and converted from there: the sender may still write the files it sends
 * from, so nothing is read from it twice.
 */
import type { LoadedConfig } from "../../config/load.ts";
import { ShoalError } from "../../errors.ts";
import type { Logger } from "../../log.ts";
import { join } from "../../path.ts";
import { configFields } from "../config_fields.ts";
import { digestOf, hasherFor } from "../registry/hash.ts";
import { isDigest } from "../registry/digest.ts";
import {
  type ImageConfig,
  imageLayers,
  parseImageConfig,
  parseManifest,
} from "../registry/manifest.ts";
import { buildSquashfs, siteSquashfsOptions } from "../squashfs.ts";
import { syncDir, writeDurable } from "../store/atomic.ts";
import type { SignedPayload } from "../signature/cosign.ts";
import { checkSignatures, requiringRule, siteKeys } from "../signature/verify.ts";
import { type Claim, claimImage } from "./claim.ts";
import { type ClusterPaths, IMAGE_FILE, imageDir, META_FILE, refFile } from "./layout.ts";
import { CLUSTER_META_VERSION, type ClusterMeta } from "./meta.ts";
import { ExactReader } from "./stream.ts";

export const PROTOCOL_LINE = "SHOAL-PUBLISH 1";
const MAX_LINE = 4096;
const MAX_MANIFEST = 4 * 1024 * 1024;
const MAX_CONFIG = 64 * 1024 * 1024;
const MAX_SIGNATURES = 16;
const MAX_PAYLOAD = 64 * 1024;

export interface ConvertRequest {
  /** The platform manifest digest to store. */
  digest: string;
  /** The uid the publish is for (the helper's caller): its reference is recorded. */
  caller: number;
  input: ReadableStream<Uint8Array>;
  /** Sends one answer line to the publisher. */
  answer(line: string): Promise<void>;
  logger: Logger;
  /** Claim timing; the defaults suit a parallel filesystem. */
  claim?: { staleMs: number; heartbeatMs: number; timeoutMs: number };
  /** Bytes the images the caller references may take (store.quotaGiB); none when undefined. */
  quotaBytes?: number;
}

export type ConvertResult = { outcome: "exists" } | { outcome: "published"; size: number };

function fail(why: string): never {
  throw new ShoalError(`publish: ${why}`, {
    hint: "the bytes sent do not match the image's digest; pull the image again",
  });
}

async function part(r: ExactReader, keyword: string, max: number): Promise<Uint8Array> {
  const line = await r.line(MAX_LINE, keyword);
  const m = new RegExp(`^${keyword} (\\d+)$`).exec(line);
  if (m === null) fail(`expected '${keyword} LEN', got ${JSON.stringify(line.slice(0, 80))}`);
  const length = Number(m[1]);
  if (length > max) fail(`${keyword} of ${length} bytes is larger than the ${max} allowed`);
  return await r.bytes(length, keyword);
}

async function signatures(r: ExactReader): Promise<SignedPayload[]> {
  const count = /^signatures (\d+)$/.exec(await r.line(MAX_LINE, "signatures"));
  if (count === null || Number(count[1]) > MAX_SIGNATURES) fail("expected 'signatures N'");
  const out: SignedPayload[] = [];
  for (let i = 0; i < Number(count[1]); i++) {
    const m = /^(\d+) ([A-Za-z0-9+/=]+)$/.exec(await r.line(MAX_LINE, "a signature"));
    if (m === null || Number(m[1]) > MAX_PAYLOAD) fail("expected 'LEN BASE64' for a signature");
    out.push({ signature: m[2]!, payload: await r.bytes(Number(m[1]), "a signature payload") });
  }
  return out;
}

export async function convertPublished(
  loaded: LoadedConfig,
  paths: ClusterPaths,
  req: ConvertRequest,
): Promise<ConvertResult> {
  const r = new ExactReader(req.input);
  if (await r.line(MAX_LINE, "the protocol line") !== PROTOCOL_LINE) {
    fail(`the stream does not start with '${PROTOCOL_LINE}'`);
  }
  const name = /^name ([^/\s]+)\/(\S+)$/.exec(await r.line(MAX_LINE, "the name"));
  if (name === null) fail("expected 'name REGISTRY/REPOSITORY'");
  const ref = { registry: name[1]!, repository: name[2]! };
  const what = `image ${ref.registry}/${ref.repository}@${req.digest}`;

  const indexBytes = await part(r, "index", MAX_MANIFEST);
  const manifestBytes = await part(r, "manifest", MAX_MANIFEST);
  if (digestOf(manifestBytes) !== req.digest) fail(`the manifest sent is not ${req.digest}`);
  const parsed = parseManifest(manifestBytes, null, what);
  if (parsed.kind !== "manifest") fail("the digest names an index, not a platform's manifest");
  const manifest = parsed.manifest;
  const layers = imageLayers(manifest, what);
  const configBytes = await part(r, "config", MAX_CONFIG);
  if (digestOf(configBytes) !== manifest.config.digest) {
    fail("the config sent is not the manifest's");
  }
  const config = parseImageConfig(configBytes, what);
  const digests = [req.digest];
  if (indexBytes.length > 0) {
    const index = parseManifest(indexBytes, null, what);
    if (index.kind !== "index" || !index.index.manifests.some((m) => m.digest === req.digest)) {
      fail(`the index sent does not list ${req.digest}`);
    }
    digests.push(digestOf(indexBytes));
  }
  const signed = await signatures(r);
  const rule = requiringRule(loaded, ref);
  const verified = rule === undefined ? [] : [{
    ...await checkSignatures(await siteKeys(loaded, rule), rule, ref, digests, signed),
    repository: `${ref.registry}/${ref.repository}`,
  }];

  const timing = req.claim ?? { staleMs: 60_000, heartbeatMs: 5_000, timeoutMs: 30 * 60_000 };
  const claim = await claimImage(paths, req.digest, `uid ${req.caller} pid ${Deno.pid}`, {
    ...timing,
    onWait: (holder) => void req.answer(`wait ${holder}`),
  });
  if (claim === "exists") {
    recordRef(paths, req.caller, req.digest);
    await req.answer("exists");
    return { outcome: "exists" };
  }
  try {
    const used = req.quotaBytes === undefined ? 0 : usedBy(paths, req.caller);
    const estimate = layers.reduce((sum, l) => sum + l.size, 0);
    const overQuota = (size: number) => {
      if (req.quotaBytes === undefined || used + size <= req.quotaBytes) return;
      throw new ShoalError(
        `publish: your images in the cluster store take ${mib(used)} of your ${
          mib(req.quotaBytes)
        } (store.quotaGiB), and this one needs about ${mib(size)} more`,
        { hint: "remove images you no longer need with 'shoal rmi', or ask your admin" },
      );
    };
    overQuota(estimate);
    await req.answer("send");
    const size = await build(loaded, claim, r, {
      layers,
      config,
      meta: {
        schemaVersion: CLUSTER_META_VERSION,
        digest: req.digest,
        configDigest: manifest.config.digest,
        platform: {
          os: config.os ?? "unknown",
          architecture: config.architecture ?? "unknown",
          ...(config.variant ? { variant: config.variant } : {}),
        },
        layers: layers.map((l) => l.digest),
        publisher: req.caller,
        publishedAt: new Date().toISOString(),
        signatures: verified,
      },
      logger: req.logger,
    });
    overQuota(size);
    const committed = await claim.commit();
    recordRef(paths, req.caller, req.digest);
    await req.answer(committed ? `published ${size}` : "exists");
    return committed ? { outcome: "published", size } : { outcome: "exists" };
  } finally {
    await claim.release();
  }
}

type Pending = Omit<ClusterMeta, keyof ReturnType<typeof configFields> | "size">;

async function build(
  loaded: LoadedConfig,
  claim: Claim,
  r: ExactReader,
  what: {
    layers: { digest: string; size: number; mediaType: string }[];
    config: ImageConfig;
    meta: Pending;
    logger: Logger;
  },
): Promise<number> {
  const files: { path: string; digest: string; mediaType: string }[] = [];
  for (const [i, layer] of what.layers.entries()) {
    const path = join(claim.work, `layer-${i}`);
    const hash = hasherFor(layer.digest);
    const file = Deno.openSync(path, { write: true, createNew: true, mode: 0o644 });
    try {
      // Synchronous: a chunk is the reader's only until this returns (stream.ts).
      await r.exact(layer.size, `layer ${i}`, (chunk) => {
        hash.update(chunk);
        for (let at = 0; at < chunk.length;) at += file.writeSync(chunk.subarray(at));
      });
    } finally {
      file.close();
    }
    if (`${layer.digest.split(":")[0]}:${hash.digest("hex")}` !== layer.digest) {
      fail(`layer ${i} sent is not ${layer.digest}`);
    }
    files.push({ path, digest: layer.digest, mediaType: layer.mediaType });
  }
  if (!await r.atEnd()) fail("the stream goes on after the last layer");
  const squashfs = join(claim.work, IMAGE_FILE);
  const built = await buildSquashfs(files, squashfs, siteSquashfsOptions(loaded, {}, what.logger));
  for (const f of files) Deno.removeSync(f.path);
  const size = await flush(squashfs);
  const meta: ClusterMeta = { ...what.meta, ...configFields(what.config, built), size };
  await writeDurable(
    join(claim.work, META_FILE),
    new TextEncoder().encode(JSON.stringify(meta)),
    0o644,
  );
  await syncDir(claim.work);
  return size;
}

/** Makes the image file readable by all and flushes it to disk; returns its size. */
async function flush(path: string): Promise<number> {
  await Deno.chmod(path, 0o644);
  const file = await Deno.open(path, { read: true });
  try {
    await file.syncData();
    return (await file.stat()).size;
  } finally {
    file.close();
  }
}

/** The caller holds a tag of the image: what gc and quotas count (docs/design/store.md). */
function recordRef(paths: ClusterPaths, uid: number, digest: string): void {
  const path = refFile(paths, uid, digest);
  Deno.mkdirSync(join(path, ".."), { recursive: true, mode: 0o755 });
  Deno.writeFileSync(path, new Uint8Array(), { mode: 0o644 });
}

const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

/** Bytes of the images `uid` holds references to (their files' sizes). */
function usedBy(paths: ClusterPaths, uid: number): number {
  let used = 0;
  let names: string[] = [];
  try {
    names = [...Deno.readDirSync(join(paths.refs, String(uid)))].map((e) => e.name);
  } catch { /* no reference yet */ }
  for (const digest of names.map((n) => n.replace("-", ":")).filter(isDigest)) {
    try {
      used += Deno.statSync(join(imageDir(paths, digest), IMAGE_FILE)).size;
    } catch { /* removed by gc since: takes no space */ }
  }
  return used;
}
