/**
 * Signs images the way cosign does (specs/SIGNATURE_SPEC.md), for tests: an
 * ECDSA P-256 key pair made with WebCrypto, the public key written as the PEM
 * file `cosign generate-key-pair` writes, and signatures pushed to a registry
 * as the image manifest tagged `sha256-<hex>.sig` whose layers are the
 * simple-signing payloads, each annotated with its base64 DER signature.
 */
import {
  blobOf,
  hostPlatform,
  type Image,
  MEDIA_TYPES,
  pushImage,
  type PushTarget,
} from "./oci.ts";
import {
  PAYLOAD_TYPE,
  SIGNATURE_ANNOTATION,
  SIGNATURE_LAYER_TYPE,
  signatureTag,
} from "../../mod/image/signature/cosign.ts";

export interface TestKey {
  privateKey: CryptoKey;
  /** The PEM text of the public key (cosign.pub). */
  pem: string;
}

export async function makeKey(): Promise<TestKey> {
  const pair = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, [
    "sign",
    "verify",
  ]);
  const spki = new Uint8Array(await crypto.subtle.exportKey("spki", pair.publicKey));
  const b64 = btoa(String.fromCharCode(...spki)).replace(/.{64}/g, "$&\n");
  return {
    privateKey: pair.privateKey,
    pem: `-----BEGIN PUBLIC KEY-----\n${b64.trimEnd()}\n-----END PUBLIC KEY-----\n`,
  };
}

/** WebCrypto's r||s as ASN.1 DER, as cosign stores it. */
export function rawToDer(raw: Uint8Array): Uint8Array {
  const int = (half: Uint8Array) => {
    let i = 0;
    while (i < half.length - 1 && half[i] === 0) i++;
    const body = half.subarray(i);
    return body[0]! & 0x80 ? [0x02, body.length + 1, 0, ...body] : [0x02, body.length, ...body];
  };
  const n = raw.length / 2;
  const seq = [...int(raw.subarray(0, n)), ...int(raw.subarray(n))];
  return new Uint8Array([0x30, seq.length, ...seq]);
}

/** The payload cosign signs for `digest` in repository `reference` (registry/path). */
export function payloadFor(reference: string, digest: string): Uint8Array {
  return new TextEncoder().encode(JSON.stringify({
    critical: {
      identity: { "docker-reference": reference },
      image: { "docker-manifest-digest": digest },
      type: PAYLOAD_TYPE,
    },
    optional: null,
  }));
}

export async function signPayload(key: TestKey, payload: Uint8Array): Promise<string> {
  const raw = new Uint8Array(
    await crypto.subtle.sign(
      { name: "ECDSA", hash: "SHA-256" },
      key.privateKey,
      payload as Uint8Array<ArrayBuffer>,
    ),
  );
  return btoa(String.fromCharCode(...rawToDer(raw)));
}

/**
 * Pushes signatures of `digest` into `repository` (replacing the tag): each
 * `{payload, signature}` one layer, as cosign appends one per `cosign sign`.
 */
export async function pushSignatures(
  target: PushTarget,
  repository: string,
  digest: string,
  signatures: { payload: Uint8Array; signature: string }[],
): Promise<void> {
  const layers = signatures.map((s) => ({
    ...blobOf(SIGNATURE_LAYER_TYPE, s.payload),
    diffId: blobOf(SIGNATURE_LAYER_TYPE, s.payload).digest,
    annotations: { [SIGNATURE_ANNOTATION]: s.signature },
  }));
  const config = blobOf(
    MEDIA_TYPES.oci.config,
    new TextEncoder().encode(JSON.stringify({
      architecture: "",
      os: "",
      rootfs: { type: "layers", diff_ids: layers.map((l) => l.diffId) },
      config: {},
    })),
  );
  const manifest = blobOf(
    MEDIA_TYPES.oci.manifest,
    new TextEncoder().encode(JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.oci.manifest,
      config: { mediaType: config.mediaType, digest: config.digest, size: config.size },
      layers: layers.map((l) => ({
        mediaType: l.mediaType,
        digest: l.digest,
        size: l.size,
        annotations: l.annotations,
      })),
    })),
  );
  const artifact: Image = { format: "oci", platform: hostPlatform(), config, layers, manifest };
  await pushImage(target, repository, signatureTag(digest), artifact);
}

/** Signs `digest` as an image of `registry/repository` with `key` and pushes it there. */
export async function sign(
  target: PushTarget & { host: string },
  repository: string,
  digest: string,
  key: TestKey,
): Promise<void> {
  const payload = payloadFor(`${target.host}/${repository}`, digest);
  await pushSignatures(target, repository, digest, [{
    payload,
    signature: await signPayload(key, payload),
  }]);
}
