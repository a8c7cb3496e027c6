/**
 * Signatures at the door: a pull of an image that the site's policy covers
 * with `require` stores it only when one of its signatures verifies with one
 * of the rule's keys, and records which digest and key; a run of an image the
 * policy covers checks that record, so an image stored before the policy (or
 * by `load`) does not run unverified.
 */
import { ShoalError } from "../../errors.ts";
import type { LoadedConfig } from "../../config/load.ts";
import type { Logger } from "../../log.ts";
import type { ImageReference } from "../reference.ts";
import type { RegistryClient } from "../registry/client.ts";
import { payloadClaims, verifySignature } from "./cosign.ts";
import { readSiteKey, type SiteKey } from "./keys.ts";
import { ruleFor, type SignatureRule } from "./policy.ts";

/** What the store records of a verified image. */
export interface SignatureRecord {
  /** The digest the signature covers: the index's or the platform manifest's. */
  digest: string;
  /** The fingerprint of the site key it verified with (keys.ts). */
  key: string;
}

/** The rule requiring signatures for this image, or undefined when none does. */
export function requiringRule(
  loaded: LoadedConfig,
  ref: Pick<ImageReference, "registry" | "repository">,
): SignatureRule | undefined {
  const rule = ruleFor(loaded.config.signatures, ref.registry, ref.repository);
  return rule?.policy === "require" ? rule : undefined;
}

async function siteKeys(loaded: LoadedConfig, rule: SignatureRule): Promise<SiteKey[]> {
  return await Promise.all(rule.keys.map((k) => readSiteKey(k, loaded.config.securityChecks)));
}

/** Docker Hub's two names for one registry, as a signer may have written either. */
function sameRepository(signed: string, ref: Pick<ImageReference, "registry" | "repository">) {
  const hub = (s: string) =>
    s.replace(/^(index\.docker\.io|registry-1\.docker\.io)\//, "docker.io/");
  return hub(signed) === hub(`${ref.registry}/${ref.repository}`);
}

/**
 * Verifies a resolved image against the policy: undefined when no rule
 * requires a signature, the record when one verifies, else an error that says
 * what was found.
 */
export async function verifyPulledImage(
  loaded: LoadedConfig,
  client: RegistryClient,
  image: { reference: ImageReference; digest: string; manifestDigest: string },
  logger: Logger,
): Promise<SignatureRecord | undefined> {
  const ref = image.reference;
  const rule = requiringRule(loaded, ref);
  if (rule === undefined) return undefined;
  const keys = await siteKeys(loaded, rule);
  const name = `${ref.registry}/${ref.repository}`;
  const seen: string[] = [];
  // cosign signs what it was pointed at: the index of a multi-platform image, or one manifest.
  for (const digest of new Set([image.digest, image.manifestDigest])) {
    for (const signed of await client.fetchSignatures(ref, digest)) {
      const claims = payloadClaims(signed.payload);
      if (typeof claims === "string") {
        seen.push(`a signature whose payload is unusable: ${claims}`);
        continue;
      }
      if (claims.digest !== digest) {
        seen.push(`a signature of another digest (${claims.digest})`);
        continue;
      }
      if (!sameRepository(claims.reference, ref)) {
        seen.push(`a signature made for ${claims.reference}`);
        continue;
      }
      for (const k of keys) {
        if (await verifySignature(k.key, signed)) {
          logger.verbose(`${name}@${digest}: signature verified with ${k.path}`);
          return { digest, key: k.fingerprint };
        }
      }
      seen.push("a signature by a key the site does not list");
    }
  }
  const found = seen.length === 0
    ? "it has no cosign signature"
    : `found ${[...new Set(seen)].join("; ")}`;
  throw new ShoalError(
    `image ${name}: the site requires a signature by ${
      rule.keys.join(", ")
    } (rule '${rule.scope}'), and ${found}`,
    { hint: "ask the image's publisher to sign it (cosign sign --key), or ask your admin" },
  );
}

/** The parts of a stored image's record the policy looks at. */
export interface StoredImage {
  registry: string;
  repository: string;
  reference: string;
  digest?: string;
  manifestDigest?: string;
  signature?: SignatureRecord;
}

/** Whether the record says its own digest verified with a key the rule lists now. */
async function verifiedUnder(
  loaded: LoadedConfig,
  rule: SignatureRule,
  image: StoredImage,
): Promise<boolean> {
  const s = image.signature;
  if (s === undefined || (s.digest !== image.digest && s.digest !== image.manifestDigest)) {
    return false;
  }
  return (await siteKeys(loaded, rule)).some((k) => k.fingerprint === s.key);
}

/** Whether the site's policy lets this stored image run as it is (pull's shortcut asks). */
export async function storedImageAdmitted(
  loaded: LoadedConfig,
  image: StoredImage,
): Promise<boolean> {
  const rule = requiringRule(loaded, image);
  return rule === undefined || await verifiedUnder(loaded, rule, image);
}

/**
 * Refuses to run an image a `require` rule covers unless its record says it
 * verified with a key the rule still lists.
 */
export async function admitStoredImage(loaded: LoadedConfig, image: StoredImage): Promise<void> {
  const rule = requiringRule(loaded, image);
  if (rule === undefined || await verifiedUnder(loaded, rule, image)) return;
  throw new ShoalError(
    `image ${image.reference} was stored without a signature by ${rule.keys.join(", ")}, ` +
      `which the site requires (rule '${rule.scope}')`,
    {
      hint: image.registry === "load"
        ? "a loaded image carries no signature: pull it from a registry where it is signed"
        : `pull it again: shoal pull ${image.reference}`,
    },
  );
}
