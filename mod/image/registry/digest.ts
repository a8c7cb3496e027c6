/**
 * Content digests (`sha256:<hex>`, sha384, sha512) as OCI and go-digest define them.
 * Computing them is in hash.ts: node:crypto is for pulls, and `shoal run` reads
 * digests without loading it.
 */
import { ShoalError } from "../../errors.ts";

const hexLength = { sha256: 64, sha384: 96, sha512: 128 } as const;
export type DigestAlgorithm = keyof typeof hexLength;

export interface ParsedDigest {
  algorithm: DigestAlgorithm;
  hex: string;
}

export function isDigest(s: string): boolean {
  const m = /^(sha256|sha384|sha512):([0-9a-f]+)$/.exec(s);
  return m !== null && m[2]!.length === hexLength[m[1] as DigestAlgorithm];
}

/** Splits a digest; a malformed one (from a manifest or a header) is refused. */
export function parseDigest(s: string): ParsedDigest {
  if (!isDigest(s)) {
    throw new ShoalError(`invalid digest ${JSON.stringify(s)}: expected sha256:<64 hex digits>`);
  }
  const [algorithm, hex] = s.split(":") as [DigestAlgorithm, string];
  return { algorithm, hex };
}
