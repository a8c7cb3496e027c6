/**
 * The site configuration file (`<prefix>/etc/shoal.json`) and the user
 * preferences file (`~/.config/shoal/config.json`). Every key is optional in
 * the file; `SiteConfig` is the parsed form with defaults applied.
 */
import * as z from "../zod.ts";
import { compressions, outputFormats } from "./choices.ts";

const absPath = z.string().check(
  z.refine((p) => p.startsWith("/"), { message: "must be an absolute path" }),
);

/**
 * Variables are expanded when used (load.ts `expand`, which names one it does
 * not expand), so the value need only look absolute after that.
 */
const expandablePath = z.string().check(z.refine(
  (p) => p.startsWith("/") || p.startsWith("$"),
  { message: "must be an absolute path (may start with $HOME)" },
));

/**
 * The run dir is compared as written with the bundle's parent by the setuid
 * helper (helper/paths.c): no '.', '..', '//' or trailing '/' to tell apart.
 */
const runDirPath = expandablePath.check(z.refine(
  (p) => !/\/\/|\/$|(^|\/)\.\.?(\/|$)/.test(p),
  { message: "must be written without '.', '..', '//' or a trailing '/'" },
));

const envName = z.string().check(
  z.regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "must be a valid variable name"),
);

/** A site mount's path: `$HOME`/`$USER` are the caller's, expanded at each run. */
const mountPath = expandablePath.check(z.refine(
  (p) => !/\$(?!HOME\b|USER\b|\{HOME\}|\{USER\})/.test(p),
  { message: "may use $HOME and $USER, no other variable" },
));

export const siteMount = z.strictObject({
  type: z._default(z.literal("bind"), "bind"),
  source: mountPath,
  destination: mountPath,
  readonly: z._default(z.boolean(), true),
  /** A missing source is skipped instead of failing every run (site paths vary per node). */
  optional: z._default(z.boolean(), false),
});

export const siteDevice = z.strictObject({
  path: absPath,
  containerPath: z.optional(absPath),
  access: z._default(
    z.string().check(z.regex(/^[rwm]{1,3}$/, "must be a combination of r, w and m")),
    "rwm",
  ),
});

const nonEmpty = z.string().check(z.minLength(1));

/** `*`, `load`, a registry, or `registry/namespace[/repository]`: no tag, digest or wildcard part. */
const signatureScope = z.string().check(z.refine(
  (s) => s === "*" || /^[a-z0-9.:[\]-]+(\/[a-z0-9._-]+)*$/.test(s),
  { message: "must be *, a registry, or registry/path without a tag or digest" },
));

const signatureRule = z.strictObject({
  scope: signatureScope,
  /** `require`: a signature by one of `keys`; `none`: an exception inside a wider rule. */
  policy: z.enum(["require", "none"]),
  /** PEM public keys (cosign.pub), ECDSA P-256; root-owned like the rest of the installation. */
  keys: z._default(z.array(absPath), []),
}).check(z.refine(
  (r) => r.policy === "none" || r.keys.length > 0,
  { message: "policy require needs at least one key" },
));
/** A host MPI that `shoal run --mpi` injects (mod/mpi/inject.ts; docs/hpc.md). */
export const mpiType = z.strictObject({
  /** The MPI library (SONAME libmpi.so.N or libmpich.so.N) first, then others of it (C++, Fortran). */
  libraries: z.array(absPath).check(z.minLength(1)),
  /** Libraries injected besides what the libraries and plugins need (those dlopened by name). */
  dependencies: z._default(z.array(absPath), []),
  /** Directories searched for needed libraries before the node's ld.so.cache. */
  libraryPath: z._default(z.array(absPath), []),
  /** Plugin directories (UCX's ucx/, libfabric's providers); default destination: beside the libraries. */
  pluginDirs: z._default(
    z.array(z.strictObject({ source: absPath, destination: z.optional(absPath) })),
    [],
  ),
  /** Extra bind mounts (a PMIx directory, a fabric's config). */
  mounts: z._default(z.array(siteMount), []),
  /** Device nodes, or directories of them such as /dev/infiniband; missing ones are skipped. */
  devices: z._default(z.array(absPath), []),
  env: z._default(z.record(envName, z.string()), {}),
});

export const siteConfigSchema = z.strictObject({
  /** Refuse to run when trusted files are not root-owned (docs/admin/security.md). */
  securityChecks: z._default(z.boolean(), true),
  repositories: z.prefault(
    z.strictObject({
      /** Per-user image repository; `$HOME`/`$USER` expanded. Default `$XDG_DATA_HOME/shoal`. */
      local: z.optional(expandablePath),
      /** Read-only, admin-written repository shared by every user. */
      centralized: z.optional(absPath),
    }),
    {},
  ),
  runtime: z.prefault(
    z.strictObject({
      runc: z.optional(absPath),
      tar2sqfs: z.optional(absPath),
      mksquashfs: z.optional(absPath),
      squashfuse: z.optional(absPath),
      fusermount: z.optional(absPath),
      newuidmap: z.optional(absPath),
      newgidmap: z.optional(absPath),
      /** The setuid mount helper; default `<prefix>/libexec/shoal/shoal-mount`. */
      helper: z.optional(absPath),
      /** Init process for `run --init` (catatonit or tini). */
      init: z.optional(absPath),
      /**
       * Seconds a container has to end after shoal gets SIGTERM, SIGINT or SIGHUP
       * before everything in it is killed (`docker stop`'s 10, Slurm's KillWait).
       */
      stopTimeoutSeconds: z._default(z.number().check(z.minimum(0), z.maximum(3600)), 10),
    }),
    {},
  ),
  /**
   * Base of per-run directories (runtime/rundir.ts): a directory of the user's,
   * mode 0700, with no symlink on its path. Default `$XDG_RUNTIME_DIR/shoal` or
   * `/run/user/$UID/shoal` when that is the user's, else `/tmp/shoal-$UID`.
   */
  runDir: z.optional(runDirPath),
  registries: z.prefault(
    z.strictObject({
      /** Registries (`host[:port]`) reached over plain HTTP or without TLS verification. */
      insecure: z._default(z.array(nonEmpty), []),
      /** Extra CA bundle (PEM file) per registry `host[:port]`. */
      ca: z._default(z.record(nonEmpty, absPath), {}),
      /** Pull-through mirrors (`https://host[:port]`), tried in order before the registry. */
      mirrors: z._default(z.record(nonEmpty, z.array(z.url())), {}),
    }),
    {},
  ),
  squashfs: z.prefault(
    z.strictObject({
      compression: z._default(z.enum(compressions), "lz4"),
      /** Compression level where the compressor has one; low is fast (docs/admin/configuration.md, "Compression"). */
      level: z.optional(z.int().check(z.minimum(1), z.maximum(22))),
      blockSizeKiB: z._default(
        z.int().check(z.refine((n) => [4, 8, 16, 32, 64, 128, 256, 512, 1024].includes(n), {
          message: "must be a power of two from 4 to 1024",
        })),
        128,
      ),
    }),
    {},
  ),
  pull: z.prefault(
    z.strictObject({
      parallelDownloads: z._default(z.int().check(z.minimum(1), z.maximum(64)), 4),
      retries: z._default(z.int().check(z.minimum(0), z.maximum(20)), 3),
      /** Largest uncompressed size of one image, a guard against decompression bombs. */
      maxImageGiB: z._default(z.number().check(z.positive()), 64),
    }),
    {},
  ),
  /** Bind mounts added to every container. */
  mounts: z._default(z.array(siteMount), []),
  /** Devices added to every container. */
  devices: z._default(z.array(siteDevice), []),
  environment: z.prefault(
    z.strictObject({
      set: z._default(z.record(envName, z.string()), {}),
      prepend: z._default(z.record(envName, z.string()), {}),
      append: z._default(z.record(envName, z.string()), {}),
      unset: z._default(z.array(envName), []),
    }),
    {},
  ),
  /** Container paths users may not mount onto (or below). */
  forbiddenMountDestinations: z._default(z.array(absPath), []),
  seccompProfile: z.optional(absPath),
  /** OCI hook definitions; default `<prefix>/etc/hooks.d`. */
  hooksDir: z.optional(absPath),
  /**
   * Which images must carry a cosign signature by one of the site's keys before they are
   * pulled or run; the most specific scope covering an image decides (signature/policy.ts).
   */
  signatures: z._default(z.array(signatureRule), []),
  /** The cluster image store (docs/design/store.md); none when absent. */
  store: z.optional(z.strictObject({
    /** Its directory, on a filesystem every node mounts, owned by `owner` (not writable by others). */
    path: absPath,
    /** The account that owns the store: the converter runs as it. */
    owner: z._default(nonEmpty, "shoal"),
    /**
     * A publish whose claim nobody touched for this long died or hangs: the next publisher of
     * the image takes it over. Its holder touches it every twelfth of this.
     */
    claimStaleSeconds: z._default(z.number().check(z.minimum(1), z.maximum(86400)), 60),
    /** `shoal store gc` removes an image no user references once it stayed so this long. */
    retentionDays: z._default(z.number().check(z.minimum(0), z.maximum(3650)), 7),
    /** What the images one user references may take before their publishes of new ones are refused; 0: no limit. */
    quotaGiB: z._default(z.number().check(z.minimum(0)), 0),
  })),
  /** CDI spec dirs, read in order (a later one's device wins) by runs with `--device vendor/class=name`. */
  cdiSpecDirs: z._default(z.array(absPath), ["/etc/cdi", "/var/run/cdi"]),
  mpi: z.prefault(
    z.strictObject({
      /** The type `--mpi` injects; default the first of `types`. */
      default: z.optional(nonEmpty),
      types: z._default(z.record(nonEmpty, mpiType), {}),
    }).check(z.refine((m) => m.default === undefined || m.default in m.types, {
      message: "default must name one of mpi.types",
    })),
    {},
  ),
  helper: z.prefault(
    z.strictObject({
      /** Whether the helper may kernel-mount squashfs images owned by users (not only root's). */
      kernelMountUserImages: z._default(z.boolean(), false),
      /**
       * Loop devices (so runs, and writable layers) one user may hold through the helper at once:
       * each run holds one until its mount namespace is gone, which a process holding the
       * namespace can postpone without limit. Room for one container per core of a large node.
       */
      maxLoopDevicesPerUser: z._default(z.int().check(z.minimum(1), z.maximum(4096)), 256),
      /** The helper's writable layer (a tmpfs) by default, and the most a run may ask for. */
      writableTmpfsSize: z._default(
        z.string().check(
          z.regex(/^[0-9]{1,12}[kmg%]?$/, "must be a size: digits, then k, m, g or %"),
        ),
        "1g",
      ),
    }),
    {},
  ),
  locks: z.prefault(
    z.strictObject({
      /** How long to wait for a repository lock before giving up. */
      timeoutSeconds: z._default(z.number().check(z.positive(), z.maximum(86400)), 60),
    }),
    {},
  ),
});

export type SiteConfigFile = z.input<typeof siteConfigSchema>;
export type SiteConfig = z.output<typeof siteConfigSchema>;

/** User preferences: only keys that cannot weaken the site's security. */
export const userPreferencesSchema = z.strictObject({
  format: z.optional(z.enum(outputFormats)),
  /** The user's own local repository, in place of the site's default. */
  localRepository: z.optional(expandablePath),
});

export type UserPreferences = z.output<typeof userPreferencesSchema>;
