/**
 * Cosign's signatures as its specification stores them (specs/SIGNATURE_SPEC.md):
 * the signatures of the image with digest `sha256:<hex>` are the layers of the
 * image manifest tagged `sha256-<hex>.sig` in the same repository; each layer
 * is a "simple signing" JSON payload whose `critical.image` names the signed
 * digest, and its annotation `dev.cosignproject.cosign/signature` holds the
 * base64 ECDSA signature (ASN.1 DER) of the payload's bytes.
 *
 * Only ECDSA P-256 with SHA-256 (cosign's default key type) is verified;
 * WebCrypto does it, so nothing here loads node:crypto.
 */
import { parseDigest } from "../registry/digest.ts";

export const SIGNATURE_LAYER_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json";
export const SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature";
/** The payload's `critical.type`, as cosign writes it. */
export const PAYLOAD_TYPE = "cosign container image signature";

/** The tag cosign stores the signatures of `digest` under. */
export function signatureTag(digest: string): string {
  const { algorithm, hex } = parseDigest(digest);
  return `${algorithm}-${hex}.sig`;
}

/** A signature as found in the registry: the payload's bytes and the signature over them. */
export interface SignedPayload {
  payload: Uint8Array;
  /** base64 of the DER-encoded signature. */
  signature: string;
}

/** What a payload says it signs. */
export interface PayloadClaims {
  /** `critical.image.docker-manifest-digest`. */
  digest: string;
  /** `critical.identity.docker-reference`: the repository the signer meant. */
  reference: string;
}

/** The claims of a simple-signing payload, or why it is not one. */
export function payloadClaims(payload: Uint8Array): PayloadClaims | string {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(payload));
  } catch {
    return "the payload is not JSON";
  }
  const critical = (value as { critical?: Record<string, unknown> } | null)?.critical;
  const image = critical?.image as Record<string, unknown> | undefined;
  const identity = critical?.identity as Record<string, unknown> | undefined;
  const digest = image?.["docker-manifest-digest"];
  const reference = identity?.["docker-reference"];
  if (critical?.type !== PAYLOAD_TYPE) return `its type is not "${PAYLOAD_TYPE}"`;
  if (typeof digest !== "string" || typeof reference !== "string") {
    return "it names no image digest or no reference";
  }
  return { digest, reference };
}

/** An ECDSA signature from ASN.1 DER (SEQUENCE of two INTEGERs) to WebCrypto's r||s. */
export function derToRaw(der: Uint8Array, size = 32): Uint8Array | undefined {
  let at = 0;
  const length = (): number | undefined => {
    const first = der[at++];
    if (first === undefined) return undefined;
    if (first < 0x80) return first;
    if (first !== 0x81) return undefined; // an ECDSA signature never needs more
    return der[at++];
  };
  if (der[at++] !== 0x30) return undefined;
  const total = length();
  if (total === undefined || at + total !== der.length) return undefined;
  const out = new Uint8Array(size * 2);
  for (const half of [0, 1]) {
    if (der[at++] !== 0x02) return undefined;
    const n = length();
    if (n === undefined || n === 0 || at + n > der.length) return undefined;
    let int = der.subarray(at, at + n);
    at += n;
    while (int.length > 0 && int[0] === 0) int = int.subarray(1);
    if (int.length > size) return undefined;
    out.set(int, half * size + size - int.length);
  }
  return at === der.length ? out : undefined;
}

function base64Bytes(text: string): Uint8Array | undefined {
  try {
    return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  } catch {
    return undefined;
  }
}

/** Whether `signature` is a valid signature of `payload` by `key` (an ECDSA P-256 public key). */
export async function verifySignature(key: CryptoKey, signed: SignedPayload): Promise<boolean> {
  const der = base64Bytes(signed.signature);
  const raw = der && derToRaw(der);
  if (raw === undefined) return false;
  return await crypto.subtle.verify(
    { name: "ECDSA", hash: "SHA-256" },
    key,
    raw as Uint8Array<ArrayBuffer>,
    signed.payload as Uint8Array<ArrayBuffer>,
  );
}
