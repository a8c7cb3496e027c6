/**
 * The Debian bookworm test image is a real, usable Debian: built once and
 * then served from the cache, with the files, users and ownership apt and
 * dpkg rely on, apt pointed at the mirror this machine reaches, and it goes
 * through a registry like any other image.
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { type Readable } from "node:stream";
import { createGunzip, createZstdDecompress } from "node:zlib";
import { assert, assertEquals, assertStringIncludes } from "./support/assert.ts";
import {
  DEBIAN_CACHE_DIR,
  debianImage,
  debianImageLayer,
  hostDebianMirrors,
} from "./support/debian.ts";
import { hostPlatform, MEDIA_TYPES, pushImage } from "./support/oci.ts";
import { startRegistry } from "./support/registry.ts";

async function sha256Of(stream: Readable): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of stream) hash.update(chunk as Uint8Array);
  return `sha256:${hash.digest("hex")}`;
}

async function tar(args: string[]): Promise<string> {
  const out = await new Deno.Command("tar", { args, stdout: "piped", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`tar ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
  return new TextDecoder().decode(out.stdout);
}

interface Listed {
  mode: string;
  uid: number;
  gid: number;
  path: string;
  link?: string;
}

/** `tar -tv --numeric-owner` lines: "drwxr-xr-x 0/0  0 2024-01-01 00:00 path[ -> target]". */
async function listLayer(path: string): Promise<Map<string, Listed>> {
  const entries = new Map<string, Listed>();
  for (const line of (await tar(["-tvzf", path, "--numeric-owner"])).split("\n")) {
    const m = line.match(/^(\S+) (\d+)\/(\d+) +\d+ \S+ \S+ (.*?)(?: (?:->|link to) (.*))?$/);
    if (!m) continue;
    const entry = { mode: m[1] ?? "", uid: Number(m[2]), gid: Number(m[3]), path: m[4] ?? "" };
    entries.set(entry.path.replace(/\/$/, ""), m[5] ? { ...entry, link: m[5] } : entry);
  }
  return entries;
}

/** Build dirs (with the unpacked tree) and temp files a finished build of `kind` left. */
function leftovers(kind: "gzip" | "zstd"): string[] {
  const ext = kind === "gzip" ? "tar.gz" : "tar.zst";
  return [...Deno.readDirSync(DEBIAN_CACHE_DIR)].map((e) => e.name)
    .filter((name) => name.startsWith(`build-${kind}-`) || name.includes(`.${ext}.json.tmp-`));
}

Deno.test("debian fixture: built once into the cache, then returned at once", async () => {
  const layer = await debianImageLayer();
  assert(layer.path.startsWith(`${DEBIAN_CACHE_DIR}/`), layer.path);
  assertEquals((await Deno.stat(layer.path)).size, layer.size);
  assertEquals(await sha256Of(createReadStream(layer.path)), layer.digest);
  assertEquals(await sha256Of(createReadStream(layer.path).pipe(createGunzip())), layer.diffId);

  const started = performance.now();
  const again = await debianImageLayer();
  const ms = performance.now() - started;
  assert(ms < 2000, `second call took ${ms.toFixed(0)} ms`);
  assertEquals(again, layer);

  assertEquals(leftovers("gzip"), []);
});

Deno.test("debian fixture: the layer is a Debian bookworm with its owners and apt mirror", async () => {
  const layer = await debianImageLayer();
  const entries = await listLayer(layer.path);

  const osRelease = entries.get("etc/os-release");
  assert(osRelease?.link, "etc/os-release is missing or not a symlink");
  const release = await tar(["-xzOf", layer.path, "usr/lib/os-release"]);
  assertStringIncludes(release, "VERSION_CODENAME=bookworm");

  const aptGet = entries.get("usr/bin/apt-get");
  assertEquals(aptGet && [aptGet.mode, aptGet.uid, aptGet.gid], ["-rwxr-xr-x", 0, 0]);
  assertStringIncludes(await tar(["-xzOf", layer.path, "etc/passwd"]), "\n_apt:x:42:");
  // Numeric owners come from the tree: group mail (8) keeps /var/mail, _apt its download dir.
  assertEquals(entries.get("var/mail")?.gid, 8);
  assertEquals(entries.get("var/lib/apt/lists/partial")?.uid, 42);
  // Only the runtime provides devices; the host's resolver does not leak in.
  assertEquals([...entries.keys()].filter((p) => p.startsWith("dev/")), []);
  assertEquals(await tar(["-xzOf", layer.path, "etc/resolv.conf"]), "");

  const sources = await tar(["-xzOf", layer.path, "etc/apt/sources.list.d/debian.sources"]);
  assertStringIncludes(sources, `URIs: ${hostDebianMirrors().debian}\n`);
  assert(!entries.has("etc/apt/sources.list"), "debootstrap's sources.list is still there");

  // Reproducible packing: relative names, siblings in name order.
  const paths = [...entries.keys()];
  assert(paths.every((p) => !p.startsWith("/") && !p.startsWith("./")), "absolute or ./ names");
  const lastChild = new Map<string, string>();
  for (const path of paths) {
    const parent = path.slice(0, path.lastIndexOf("/") + 1);
    const previous = lastChild.get(parent);
    assert(previous === undefined || previous < path, `${previous} listed before ${path}`);
    lastChild.set(parent, path);
  }
});

Deno.test("debian fixture: the zstd layer holds the same tar", async () => {
  const gzip = await debianImageLayer();
  const zstd = await debianImageLayer({ compression: "zstd" });
  assert(zstd.path.endsWith(".tar.zst"), zstd.path);
  assertEquals(await sha256Of(createReadStream(zstd.path)), zstd.digest);
  assertEquals(
    await sha256Of(createReadStream(zstd.path).pipe(createZstdDecompress())),
    gzip.diffId,
  );
  assertEquals(zstd.diffId, gzip.diffId);
  assertEquals(leftovers("zstd"), []);
});

Deno.test("debian fixture: the image pushes to a registry and its manifest comes back", async () => {
  const layer = await debianImageLayer();
  const image = await debianImage();
  await using reg = await startRegistry("plain");
  assertEquals(await pushImage(reg, "debian", "bookworm", image), image.manifest.digest);

  const res = await fetch(`${reg.url}/v2/debian/manifests/bookworm`, {
    headers: { accept: MEDIA_TYPES.oci.manifest },
  });
  assertEquals(res.status, 200);
  assertEquals(res.headers.get("docker-content-digest"), image.manifest.digest);
  const manifest = await res.json() as {
    config: { digest: string };
    layers: { mediaType: string; digest: string; size: number }[];
  };
  assertEquals(manifest.layers, [
    { mediaType: MEDIA_TYPES.oci.layer.gzip, digest: layer.digest, size: layer.size },
  ]);

  const config = await (await fetch(`${reg.url}/v2/debian/blobs/${manifest.config.digest}`))
    .json() as {
      architecture: string;
      config: { Cmd: string[]; Env: string[] };
      rootfs: { diff_ids: string[] };
    };
  assertEquals(config.architecture, hostPlatform().architecture);
  assertEquals(config.config.Cmd, ["bash"]);
  assert(config.config.Env.some((e) => e.startsWith("PATH=/usr/local/sbin:")), "no PATH");
  assertEquals(config.rootfs.diff_ids, [layer.diffId]);

  const blob = await fetch(`${reg.url}/v2/debian/blobs/${layer.digest}`, { method: "HEAD" });
  await blob.body?.cancel();
  assertEquals(blob.status, 200);
  assertEquals(blob.headers.get("content-length"), String(layer.size));
});

Deno.test("debian fixture: apt in the image uses the mirror this machine's apt uses", async () => {
  const dir = await Deno.makeTempDir({ prefix: "shoal-apt-" });
  try {
    assertEquals(hostDebianMirrors(dir), {
      debian: "http://deb.debian.org/debian",
      security: "http://deb.debian.org/debian-security",
    });
    await Deno.mkdir(`${dir}/sources.list.d`);
    await Deno.writeTextFile(
      `${dir}/sources.list`,
      "# deb http://commented.example/debian bookworm main\n" +
        "deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main\n",
    );
    await Deno.writeTextFile(
      `${dir}/sources.list.d/debian.sources`,
      "Types: deb\nURIs: http://disabled.example/debian-security\nSuites: bookworm-security\n" +
        "Enabled: no\n\n" +
        "Types: deb-src deb\nURIs: http://security.example/debian-security\n" +
        "Suites: bookworm-security\nComponents: main\n",
    );
    assertEquals(hostDebianMirrors(dir), {
      debian: "http://mirror.example/debian",
      security: "http://security.example/debian-security",
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
