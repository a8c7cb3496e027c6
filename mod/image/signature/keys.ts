/**
 * The site's signature keys: PEM public keys ("PUBLIC KEY", SubjectPublicKeyInfo,
 * ECDSA P-256) as `cosign generate-key-pair` writes them. A key decides which
 * images every user may run, so with the installation's security checks on it
 * is trusted only as the site config is: root's and not writable by others,
 * with every directory above it.
 */
import { ConfigError, SecurityError } from "../../errors.ts";
import { rootOnlyProblems } from "../../config/security.ts";

export interface SiteKey {
  path: string;
  /** `sha256:<hex>` of the key's DER bytes: what an image's record names. */
  fingerprint: string;
  key: CryptoKey;
}

const hex = (bytes: ArrayBuffer) =>
  Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");

/** The DER bytes of the one PUBLIC KEY block of a PEM text, or undefined. */
export function pemPublicKey(text: string): Uint8Array | undefined {
  const m = /-----BEGIN PUBLIC KEY-----([A-Za-z0-9+/=\s]+)-----END PUBLIC KEY-----/.exec(text);
  if (m === null) return undefined;
  try {
    return Uint8Array.from(atob(m[1]!.replace(/\s+/g, "")), (c) => c.charCodeAt(0));
  } catch {
    return undefined;
  }
}

export async function readSiteKey(path: string, checked: boolean): Promise<SiteKey> {
  const [unsafe] = checked ? rootOnlyProblems(path) : [];
  if (unsafe) {
    throw new SecurityError(`signature key ${path}: ${unsafe.message}`, { hint: unsafe.hint });
  }
  const fail = (why: string) =>
    new ConfigError(`signature key ${path}: ${why}`, {
      hint: "give the PEM public key that `cosign generate-key-pair` wrote (cosign.pub)",
    });
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (err) {
    throw fail(`cannot read it: ${(err as Error).message}`);
  }
  const der = pemPublicKey(text);
  if (der === undefined) throw fail("no PEM PUBLIC KEY block in it");
  let key: CryptoKey;
  try {
    key = await crypto.subtle.importKey(
      "spki",
      der as Uint8Array<ArrayBuffer>,
      { name: "ECDSA", namedCurve: "P-256" },
      false,
      ["verify"],
    );
  } catch {
    throw fail("not an ECDSA P-256 public key (the only kind verified)");
  }
  const fingerprint = `sha256:${
    hex(await crypto.subtle.digest("SHA-256", der as Uint8Array<ArrayBuffer>))
  }`;
  return { path, fingerprint, key };
}
