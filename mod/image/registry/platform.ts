/** Platforms (`os/arch[/variant]`) and choosing one image out of a multi-platform index. */
import { ShoalError, UsageError } from "../../errors.ts";
import type { ImageIndex } from "./manifest.ts";

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

const archNames: Record<string, string> = { x86_64: "amd64", aarch64: "arm64" };

export function hostPlatform(): Platform {
  const architecture = archNames[Deno.build.arch] ?? Deno.build.arch;
  return architecture === "arm64"
    ? { os: Deno.build.os, architecture, variant: "v8" }
    : { os: Deno.build.os, architecture };
}

/** Parses `--platform os/arch[/variant]`, accepting the usual aliases (x86_64, aarch64). */
export function parsePlatform(s: string): Platform {
  const parts = s.trim().toLowerCase().split("/");
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => !/^[a-z0-9._-]+$/.test(p))) {
    throw new UsageError(
      `invalid platform ${JSON.stringify(s)}: expected OS/ARCH[/VARIANT], e.g. linux/arm64`,
    );
  }
  const [os, arch, variant] = parts as [string, string, string | undefined];
  const architecture = archNames[arch] ?? arch;
  return variant === undefined ? { os, architecture } : { os, architecture, variant };
}

export function formatPlatform(p: Platform): string {
  return [p.os, p.architecture, p.variant].filter((x) => x).join("/");
}

/** arm64 without a variant means v8 and arm without one means v7, as containerd treats them. */
function normalizedVariant(p: Platform): string | undefined {
  if (p.variant) return p.variant;
  if (p.architecture === "arm64") return "v8";
  if (p.architecture === "arm") return "v7";
  return undefined;
}

export function platformMatches(candidate: Platform, wanted: Platform): boolean {
  if (candidate.os !== wanted.os || candidate.architecture !== wanted.architecture) return false;
  const want = normalizedVariant(wanted);
  // Without a wanted variant (amd64, ppc64le, ...) any variant of the architecture fits.
  return (wanted.variant === undefined && want === undefined) ||
    normalizedVariant(candidate) === want;
}

/** Attestations and signatures stored in an index (BuildKit writes `unknown/unknown`). */
function isRunnable(p: Platform): boolean {
  return p.os !== "unknown" && p.architecture !== "unknown";
}

/**
 * The index entry for `wanted`; when none fits, an error naming the platforms
 * the image has, so the user can pick one with --platform.
 */
export function selectManifest(
  index: ImageIndex,
  wanted: Platform,
  what: string,
): ImageIndex["manifests"][number] {
  const entries = index.manifests.filter((m) => m.platform !== undefined && isRunnable(m.platform));
  const fits = entries.filter((m) => platformMatches(m.platform!, wanted));
  // Prefer an exact variant over "any variant": amd64 plain over amd64/v3 when none was asked for.
  const exact = fits.find((m) => (m.platform!.variant ?? "") === (wanted.variant ?? ""));
  const chosen = exact ?? fits[0];
  if (chosen !== undefined) return chosen;
  const available = [...new Set(entries.map((m) => formatPlatform(m.platform!)))];
  throw new ShoalError(
    `${what}: no image for platform ${formatPlatform(wanted)}; available: ${
      available.length > 0 ? available.join(", ") : "none"
    }`,
    { hint: available.length > 0 ? "choose one with --platform" : undefined },
  );
}
