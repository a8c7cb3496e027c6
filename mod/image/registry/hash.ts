/** Computing content digests of what a pull or load verifies. */
import { createHash, type Hash } from "node:crypto";
import { type DigestAlgorithm, parseDigest } from "./digest.ts";

/** A hasher of the algorithm `digest` names, to check content against it. */
export function hasherFor(digest: string): Hash {
  return createHash(parseDigest(digest).algorithm);
}

export function digestOf(bytes: Uint8Array, algorithm: DigestAlgorithm = "sha256"): string {
  return `${algorithm}:${createHash(algorithm).update(bytes).digest("hex")}`;
}
