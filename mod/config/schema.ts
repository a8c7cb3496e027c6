/**
 * The site configuration file (`<prefix>/etc/shoal.json`) and the user
 * preferences file (`~/.config/shoal/config.json`). Every key is optional in
 * the file; `SiteConfig` is the parsed form with defaults applied.
 */
import { z } from "zod";

const absPath = z.string().refine((p) => p.startsWith("/"), {
  message: "must be an absolute path",
});

/** `$HOME`/`$USER` are expanded when used, so the value need only look absolute after that. */
const expandablePath = z.string().refine(
  (p) => p.startsWith("/") || p.startsWith("$HOME") || p.startsWith("${HOME}"),
  { message: "must be an absolute path (may start with $HOME)" },
);

const envName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "must be a valid variable name");

export const compressions = ["zstd", "gzip", "lz4", "xz", "lzo", "lzma"] as const;

export const siteMount = z.strictObject({
  type: z.literal("bind").default("bind"),
  source: absPath,
  destination: absPath,
  readonly: z.boolean().default(true),
  /** A missing source is skipped instead of failing every run (site paths vary per node). */
  optional: z.boolean().default(false),
});

export const siteDevice = z.strictObject({
  path: absPath,
  containerPath: absPath.optional(),
  access: z.string().regex(/^[rwm]{1,3}$/, "must be a combination of r, w and m").default("rwm"),
});

export const siteConfigSchema = z.strictObject({
  /** Refuse to run when trusted files are not root-owned (see README: security checks). */
  securityChecks: z.boolean().default(true),
  repositories: z.strictObject({
    /** Per-user image repository; `$HOME`/`$USER` expanded. Default `$XDG_DATA_HOME/shoal`. */
    local: expandablePath.optional(),
    /** Read-only, admin-written repository shared by every user. */
    centralized: absPath.optional(),
  }).prefault({}),
  runtime: z.strictObject({
    runc: absPath.optional(),
    tar2sqfs: absPath.optional(),
    mksquashfs: absPath.optional(),
    squashfuse: absPath.optional(),
    fusermount: absPath.optional(),
    newuidmap: absPath.optional(),
    newgidmap: absPath.optional(),
    /** The setuid mount helper; default `<prefix>/libexec/shoal/shoal-mount`. */
    helper: absPath.optional(),
    /** Init process for `run --init` (catatonit or tini). */
    init: absPath.optional(),
  }).prefault({}),
  /** Base of per-run directories. Default `/run/user/$UID/shoal` when that is yours, else `/tmp/shoal-$UID`. */
  runDir: expandablePath.optional(),
  registries: z.strictObject({
    /** Registries (`host[:port]`) reached over plain HTTP or without TLS verification. */
    insecure: z.array(z.string().min(1)).default([]),
    /** Extra CA bundle (PEM file) per registry `host[:port]`. */
    ca: z.record(z.string().min(1), absPath).default({}),
    /** Pull-through mirrors (`https://host[:port]`), tried in order before the registry. */
    mirrors: z.record(z.string().min(1), z.array(z.url())).default({}),
  }).prefault({}),
  squashfs: z.strictObject({
    compression: z.enum(compressions).default("zstd"),
    /** Compression level where the compressor has one; low is fast (see DESIGN.md). */
    level: z.int().min(1).max(22).optional(),
    blockSizeKiB: z.int().refine((n) => [4, 8, 16, 32, 64, 128, 256, 512, 1024].includes(n), {
      message: "must be a power of two from 4 to 1024",
    }).default(128),
  }).prefault({}),
  pull: z.strictObject({
    parallelDownloads: z.int().min(1).max(64).default(4),
    retries: z.int().min(0).max(20).default(3),
    /** Largest uncompressed size of one image, a guard against decompression bombs. */
    maxImageGiB: z.number().positive().default(64),
  }).prefault({}),
  /** Bind mounts added to every container. */
  mounts: z.array(siteMount).default([]),
  /** Devices added to every container. */
  devices: z.array(siteDevice).default([]),
  environment: z.strictObject({
    set: z.record(envName, z.string()).default({}),
    prepend: z.record(envName, z.string()).default({}),
    append: z.record(envName, z.string()).default({}),
    unset: z.array(envName).default([]),
  }).prefault({}),
  /** Container paths users may not mount onto (or below). */
  forbiddenMountDestinations: z.array(absPath).default([]),
  seccompProfile: absPath.optional(),
  /** OCI hook definitions; default `<prefix>/etc/hooks.d`. */
  hooksDir: absPath.optional(),
  helper: z.strictObject({
    /** Whether the helper may kernel-mount squashfs images owned by users (not only root's). */
    kernelMountUserImages: z.boolean().default(false),
  }).prefault({}),
  locks: z.strictObject({
    /** How long to wait for a repository lock before giving up. */
    timeoutSeconds: z.number().positive().max(86400).default(60),
  }).prefault({}),
});

export type SiteConfigFile = z.input<typeof siteConfigSchema>;
export type SiteConfig = z.output<typeof siteConfigSchema>;

export const outputFormats = ["table", "json"] as const;
export type OutputFormat = typeof outputFormats[number];

/** User preferences: only keys that cannot weaken the site's security. */
export const userPreferencesSchema = z.strictObject({
  format: z.enum(outputFormats).optional(),
  /** The user's own local repository, in place of the site's default. */
  localRepository: expandablePath.optional(),
});

export type UserPreferences = z.output<typeof userPreferencesSchema>;
