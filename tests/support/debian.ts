/**
 * The Debian bookworm minbase test image, the realistic image of the test
 * suite (apt-get inside a container, the pull benchmark). `debootstrap
 * --variant=minbase` runs once per machine, as root; the tree is trimmed like
 * Debian's official images, packed as one tar layer (sorted entries, numeric
 * ownership from the tree) and kept in DEBIAN_CACHE_DIR across runs. A fresh
 * CI machine builds it once per run, and only when a test asks for it.
 *
 * Test files run in parallel processes: one builds under a lock file while
 * the others wait, files appear by atomic rename only, and a build that fails
 * (or is killed) leaves no layer behind; the next one cleans up its leftovers.
 */
import { createHash, type Hash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { basename } from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { constants, createGunzip, createGzip, createZstdCompress } from "node:zlib";
import { hostPlatform, type Image, type ImageSpec, makeImage, MEDIA_TYPES } from "./oci.ts";

/** Root-owned and outside the checkout, so it survives clean checkouts on the same machine. */
export const DEBIAN_CACHE_DIR = Deno.env.get("SHOAL_TEST_CACHE") ?? "/var/cache/shoal-tests";
const SUITE = "bookworm";
/** Part of the file names: bump it when the recipe below changes, so old caches are rebuilt. */
const RECIPE = 1;
const DEFAULT_MIRRORS = {
  debian: "http://deb.debian.org/debian",
  security: "http://deb.debian.org/debian-security",
};

export type DebianCompression = "gzip" | "zstd";

export interface DebianLayer {
  /** The compressed layer file in the cache. */
  path: string;
  /** "sha256:<hex>" of the compressed file: the layer's blob digest. */
  digest: string;
  /** "sha256:<hex>" of the uncompressed tar. */
  diffId: string;
  /** Bytes of the compressed file. */
  size: number;
}

interface CacheRecord extends DebianLayer {
  mirror: string;
  seconds: number;
}

export interface DebianMirrors {
  debian: string;
  security: string;
}

// ---------------------------------------------------------------------------
// Mirrors

interface AptSource {
  uri: string;
  suites: string[];
}

/** deb822 stanzas (`*.sources`): "Types: deb", "URIs: ...", "Suites: ...". */
function deb822Sources(text: string): AptSource[] {
  const sources: AptSource[] = [];
  for (const stanza of text.split(/\n\s*\n/)) {
    const fields = new Map<string, string>();
    for (const line of stanza.split("\n")) {
      const m = line.match(/^([A-Za-z-]+):\s*(.*)$/);
      if (m) fields.set((m[1] ?? "").toLowerCase(), (m[2] ?? "").trim());
    }
    if (!(fields.get("types") ?? "").split(/\s+/).includes("deb")) continue;
    if (fields.get("enabled") === "no") continue;
    const uri = (fields.get("uris") ?? "").split(/\s+/)[0];
    if (uri) sources.push({ uri, suites: (fields.get("suites") ?? "").split(/\s+/) });
  }
  return sources;
}

/** One-line sources (`sources.list`): "deb [options] URI SUITE COMPONENT...". */
function oneLineSources(text: string): AptSource[] {
  const sources: AptSource[] = [];
  for (const line of text.split("\n")) {
    const m = line.match(/^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)/);
    if (m) sources.push({ uri: m[1] ?? "", suites: [m[2] ?? ""] });
  }
  return sources;
}

function readIfPresent(path: string): string {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return "";
  }
}

/**
 * The Debian archive and security mirrors this machine's apt uses, so the
 * image's apt-get reaches the same (reachable) mirror; Debian's own hosts
 * when the machine names none.
 */
export function hostDebianMirrors(aptDir = "/etc/apt"): DebianMirrors {
  const sources = oneLineSources(readIfPresent(`${aptDir}/sources.list`));
  let names: string[] = [];
  try {
    names = [...Deno.readDirSync(`${aptDir}/sources.list.d`)].map((e) => e.name).sort();
  } catch { /* no sources.list.d */ }
  for (const name of names) {
    const text = readIfPresent(`${aptDir}/sources.list.d/${name}`);
    if (name.endsWith(".sources")) sources.push(...deb822Sources(text));
    if (name.endsWith(".list")) sources.push(...oneLineSources(text));
  }
  const find = (suite: string) => sources.find((s) => s.suites.includes(suite))?.uri;
  return {
    debian: find(SUITE) ?? DEFAULT_MIRRORS.debian,
    security: find(`${SUITE}-security`) ?? DEFAULT_MIRRORS.security,
  };
}

function aptSources(mirrors: DebianMirrors): string {
  const keyring = "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg";
  return [
    `Types: deb\nURIs: ${mirrors.debian}\nSuites: ${SUITE} ${SUITE}-updates\nComponents: main\n${keyring}\n`,
    `Types: deb\nURIs: ${mirrors.security}\nSuites: ${SUITE}-security\nComponents: main\n${keyring}\n`,
  ].join("\n");
}

// ---------------------------------------------------------------------------
// Build

export async function run(cmd: string, args: string[], logFile?: string): Promise<void> {
  const out = await new Deno.Command(cmd, { args, stdin: "null", stdout: "piped", stderr: "piped" })
    .output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  if (logFile) await Deno.writeTextFile(logFile, text);
  if (!out.success) {
    const tail = text.trim().split("\n").slice(-5).join(" | ");
    throw new Error(`${cmd} ${args.join(" ")} failed (exit ${out.code}): ${tail}`);
  }
}

function unescapeMountPath(path: string): string {
  return path.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/**
 * Unmounts what a killed debootstrap left mounted below `dir` (proc, sys, a
 * tmpfs /dev with the host's device nodes bound into it), deepest first, so
 * removing the tree can never reach into the host's /dev or /proc.
 */
async function unmountBelow(dir: string): Promise<void> {
  const mounts = Deno.readTextFileSync("/proc/self/mountinfo").split("\n")
    .map((line) => unescapeMountPath(line.split(" ")[4] ?? ""))
    .filter((point) => point.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const point of mounts) await run("umount", ["--lazy", point]);
}

export async function removeTree(dir: string): Promise<void> {
  await unmountBelow(dir);
  await run("rm", ["-rf", "--one-file-system", "--", dir]);
}

async function emptyDir(dir: string, keep: string[] = []): Promise<void> {
  for await (const entry of Deno.readDir(dir)) {
    if (!keep.includes(entry.name)) await Deno.remove(`${dir}/${entry.name}`, { recursive: true });
  }
}

/**
 * Trims the tree like Debian's official images: no downloaded packages or
 * package lists (apt-get update fetches fresh ones), no device nodes (the
 * runtime provides /dev), none of this host's resolver, hostname or
 * bootstrap log; and apt pointed at `mirrors`.
 */
async function trim(root: string, mirrors: DebianMirrors): Promise<void> {
  await emptyDir(`${root}/var/cache/apt/archives`, ["partial", "lock"]);
  for (const bin of ["pkgcache.bin", "srcpkgcache.bin"]) {
    await Deno.remove(`${root}/var/cache/apt/${bin}`).catch(() => {});
  }
  await emptyDir(`${root}/var/lib/apt/lists`, ["partial", "lock"]);
  // As apt leaves them after its first run: its download sandbox user must write there.
  const aptUid = Number(
    Deno.readTextFileSync(`${root}/etc/passwd`).match(/^_apt:[^:]*:(\d+):/m)?.[1],
  );
  if (!Number.isInteger(aptUid)) throw new Error(`no _apt user in ${root}/etc/passwd`);
  for (const dir of ["var/cache/apt/archives/partial", "var/lib/apt/lists/partial"]) {
    await Deno.chown(`${root}/${dir}`, aptUid, 0);
    await Deno.chmod(`${root}/${dir}`, 0o700);
  }
  await emptyDir(`${root}/dev`);
  await Deno.remove(`${root}/var/log/bootstrap.log`).catch(() => {});
  await Deno.writeTextFile(`${root}/etc/resolv.conf`, "");
  await Deno.writeTextFile(`${root}/etc/hostname`, "");
  await Deno.remove(`${root}/etc/apt/sources.list`).catch(() => {});
  await Deno.writeTextFile(`${root}/etc/apt/sources.list.d/debian.sources`, aptSources(mirrors));
}

/** Hashes what passes through. */
function hashing(hash: Hash): Transform {
  return new Transform({
    transform(chunk: Uint8Array, _encoding, done) {
      hash.update(chunk);
      done(null, chunk);
    },
  });
}

function compressor(compression: DebianCompression): Transform {
  return compression === "gzip"
    ? createGzip({ level: 6 })
    : createZstdCompress({ params: { [constants.ZSTD_c_compressionLevel]: 3 } });
}

/** Streams `tar` through `compression` into `out`; returns the digests of both sides. */
async function compressTo(
  tar: Readable,
  compression: DebianCompression,
  out: string,
): Promise<Omit<DebianLayer, "path">> {
  const inner = createHash("sha256");
  const outer = createHash("sha256");
  await pipeline(
    tar,
    hashing(inner),
    compressor(compression),
    hashing(outer),
    createWriteStream(out, { mode: 0o644 }),
  );
  return {
    digest: `sha256:${outer.digest("hex")}`,
    diffId: `sha256:${inner.digest("hex")}`,
    size: (await Deno.stat(out)).size,
  };
}

/**
 * GNU tar of the tree: entries sorted by name and named without a "./"
 * prefix, numeric uid/gid from the tree, PAX without the per-run atime and
 * ctime records, file capabilities kept, nothing from other filesystems.
 */
export async function packTree(root: string, out: string): Promise<Omit<DebianLayer, "path">> {
  const top = [...Deno.readDirSync(root)].map((e) => e.name).sort();
  const child = new Deno.Command("tar", {
    args: [
      "--create",
      "--file=-",
      `--directory=${root}`,
      "--sort=name",
      "--numeric-owner",
      "--one-file-system",
      "--format=posix",
      "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
      "--xattrs",
      "--xattrs-include=security.capability",
      "--",
      ...top,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const packed = await compressTo(Readable.fromWeb(child.stdout), "gzip", out);
  const status = await child.status;
  if (!status.success) throw new Error(`tar of ${root} failed: ${(await stderr).trim()}`);
  return packed;
}

export async function writeAtomically(path: string, text: string): Promise<void> {
  const tmp = `${path}.tmp-${crypto.randomUUID()}`;
  await Deno.writeTextFile(tmp, text, { mode: 0o644 });
  await Deno.rename(tmp, path);
}

function cachePaths(compression: DebianCompression) {
  const arch = hostPlatform().architecture;
  const base = `${DEBIAN_CACHE_DIR}/debian-${SUITE}-minbase-${arch}-r${RECIPE}`;
  const ext = compression === "gzip" ? "tar.gz" : "tar.zst";
  return { layer: `${base}.${ext}`, record: `${base}.${ext}.json` };
}

/**
 * The cached layer, if both its record and a file of the recorded size are
 * there, and it holds the tar `diffId` when one is asked for.
 */
async function cached(
  compression: DebianCompression,
  diffId?: string,
): Promise<CacheRecord | undefined> {
  const paths = cachePaths(compression);
  try {
    const record = JSON.parse(await Deno.readTextFile(paths.record)) as CacheRecord;
    const stat = await Deno.stat(paths.layer);
    const current = diffId === undefined || record.diffId === diffId;
    if (current && stat.size === record.size) return { ...record, path: paths.layer };
  } catch { /* absent or unreadable: build */ }
  return undefined;
}

async function buildGzip(work: string, mirrors: DebianMirrors): Promise<DebianLayer> {
  const root = `${work}/root`;
  // Dies with us (parent-death signal), so a killed test run leaves no build writing on.
  await run(
    "setpriv",
    ["--pdeathsig", "KILL", "--", "debootstrap", "--variant=minbase", SUITE, root, mirrors.debian],
    `${work}/debootstrap.log`,
  );
  await trim(root, mirrors);
  const out = `${work}/layer`;
  const packed = await packTree(root, out);
  const paths = cachePaths("gzip");
  await Deno.rename(out, paths.layer);
  return { path: paths.layer, ...packed };
}

/** The zstd layer holds the same tar as the gzip one (same diffId), recompressed. */
async function buildZstd(work: string, gzip: DebianLayer): Promise<DebianLayer> {
  const out = `${work}/layer`;
  const packed = await compressTo(createReadStream(gzip.path).pipe(createGunzip()), "zstd", out);
  if (packed.diffId !== gzip.diffId) throw new Error(`${gzip.path} changed while recompressing`);
  const paths = cachePaths("zstd");
  await Deno.rename(out, paths.layer);
  return { path: paths.layer, ...packed };
}

/**
 * Builds under the lock, unless another process did while we waited. The
 * zstd layer is made from `gzip`, and rebuilt when that one was.
 */
async function buildLocked(
  compression: DebianCompression,
  gzip: DebianLayer | undefined,
): Promise<DebianLayer> {
  if (Deno.uid() !== 0) {
    throw new Error(
      `no cached Debian test image in ${DEBIAN_CACHE_DIR}, and building it needs root (debootstrap)`,
    );
  }
  await Deno.mkdir(DEBIAN_CACHE_DIR, { recursive: true, mode: 0o755 });
  using lock = await Deno.open(`${DEBIAN_CACHE_DIR}/${compression}.lock`, {
    create: true,
    write: true,
  });
  await lock.lock(true);
  const done = await cached(compression, gzip?.diffId);
  if (done) return done;
  // Only a lock holder builds, so any build dir or record temp file of this
  // kind is a killed build's.
  const prefix = `build-${compression}-`;
  const recordTmp = `${basename(cachePaths(compression).record)}.tmp-`;
  for await (const entry of Deno.readDir(DEBIAN_CACHE_DIR)) {
    if (entry.name.startsWith(prefix) || entry.name.startsWith(recordTmp)) {
      await removeTree(`${DEBIAN_CACHE_DIR}/${entry.name}`);
    }
  }
  const work = await Deno.makeTempDir({ dir: DEBIAN_CACHE_DIR, prefix });
  const started = performance.now();
  const mirrors = hostDebianMirrors();
  try {
    const layer = gzip ? await buildZstd(work, gzip) : await buildGzip(work, mirrors);
    const seconds = Math.round((performance.now() - started) / 100) / 10;
    const record: CacheRecord = { ...layer, mirror: mirrors.debian, seconds };
    await writeAtomically(cachePaths(compression).record, JSON.stringify(record, null, 2) + "\n");
    console.error(
      `debian test image: built ${layer.path} (${
        (layer.size / 1e6).toFixed(1)
      } MB) in ${seconds} s`,
    );
    return layer;
  } finally {
    await removeTree(work);
  }
}

/**
 * The Debian bookworm minbase layer (gzip by default), built on the first
 * call on this machine, then read from the cache.
 */
export async function debianImageLayer(
  options: { compression?: DebianCompression } = {},
): Promise<DebianLayer> {
  const compression = options.compression ?? "gzip";
  const gzip = compression === "zstd" ? await debianImageLayer() : undefined;
  const record = await cached(compression, gzip?.diffId) ?? await buildLocked(compression, gzip);
  const { path, digest, diffId, size } = record;
  return { path, digest, diffId, size };
}

/**
 * A one-layer Debian image for pushImage (the layer is held in memory,
 * about 50 MB gzip). Cmd bash, the usual PATH, the host's platform.
 */
export async function debianImage(
  options: { compression?: DebianCompression; spec?: ImageSpec } = {},
): Promise<Image> {
  const compression = options.compression ?? "gzip";
  const spec = options.spec ?? {};
  const mediaType = MEDIA_TYPES[spec.format ?? "oci"].layer[compression];
  if (mediaType === undefined) throw new Error(`${spec.format} manifests have no zstd layers`);
  const layer = await debianImageLayer({ compression });
  const data = await Deno.readFile(layer.path);
  return makeImage([{
    mediaType,
    digest: layer.digest,
    diffId: layer.diffId,
    size: layer.size,
    data,
  }], {
    env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
    cmd: ["bash"],
    ...spec,
  });
}
