/**
 * `shoal load`: archives built here in the layouts `docker save` (classic and
 * Docker 25+) and `podman save --format oci-archive` write, plain and gzip,
 * loaded by the unprivileged test user and by root, then checked through
 * `shoal images --format json` and the squashfs file itself. Hostile and
 * broken archives must fail with one line and leave the repository as it was.
 */
import { gzipSync, zstdCompressSync } from "node:zlib";
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./support/assert.ts";
import {
  hostPlatform,
  type Image,
  makeImage,
  makeIndex,
  makeLayer,
  MEDIA_TYPES,
  type Platform,
  sha256,
} from "./support/oci.ts";
import { type Result, runCommand, shoalScript } from "./support/shoal.ts";
import { cat, dirNames, listImage } from "./support/squashfs.ts";
import { tarArchive, type TarEntry, whiteout } from "./support/tar.ts";
import {
  archive,
  blobMembers,
  file,
  hexOf,
  type Member,
  OCI_LAYOUT,
  ociFlat,
} from "./support/archive.ts";
import { runAs, testUser } from "./support/users.ts";
import { installedShoal, rootOwnedTempDir } from "./support/install.ts";
import { fakeImage, fakeSquashfs } from "./support/store.ts";
import { openStore } from "../mod/image/store/store.ts";

const enc = new TextEncoder();

// ---------------------------------------------------------------------------
// The test image: two layers, owners, a setuid file, a whiteout

const OTHER: Platform = hostPlatform().architecture === "amd64"
  ? { os: "linux", architecture: "arm64" }
  : { os: "linux", architecture: "amd64" };

function platformText(p: Platform): string {
  return [p.os, p.architecture, p.variant].filter(Boolean).join("/");
}

function baseEntries(platform: Platform): TarEntry[] {
  return [
    { type: "dir", path: "etc" },
    { type: "dir", path: "home" },
    { type: "dir", path: "home/alice", mode: 0o750, uid: 1000, gid: 1000 },
    { type: "dir", path: "usr" },
    { type: "dir", path: "usr/bin" },
    { type: "dir", path: "tmp", mode: 0o1777 },
    {
      type: "file",
      path: "etc/passwd",
      content: "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n",
    },
    { type: "file", path: "etc/group", content: "root:x:0:\nalice:x:1000:\n" },
    { type: "file", path: "etc/platform", content: platformText(platform) + "\n" },
    { type: "file", path: "usr/bin/tool", mode: 0o4755, content: "#!/bin/sh\necho tool\n" },
    {
      type: "file",
      path: "home/alice/notes.txt",
      uid: 1000,
      gid: 1000,
      mode: 0o600,
      content: "mine\n",
    },
    { type: "file", path: "tmp/gone", content: "deleted by the next layer\n" },
  ];
}

const TOP_ENTRIES: TarEntry[] = [
  { type: "file", path: "etc/motd", content: "hello from layer 2\n" },
  whiteout("tmp/gone"),
  { type: "dir", path: "opt" },
  { type: "file", path: "opt/data", uid: 1234, gid: 5678, mode: 0o640, content: "data\n" },
];

const SPEC = {
  env: ["PATH=/usr/bin:/bin", "GREETING=hello"],
  cmd: ["/usr/bin/tool", "--flag"],
  workingDir: "/home/alice",
  user: "alice",
  labels: { "org.example.test": "load" },
};

/**
 * The test image for `platform`: uncompressed layers as `docker save` writes
 * them, gzip + zstd, or gzip only (Docker manifests know no zstd).
 */
function testImage(platform: Platform, layers: "plain" | "compressed" | "gzip"): Image {
  const [a, b] = layers === "plain"
    ? ["none", "none"] as const
    : layers === "gzip"
    ? ["gzip", "gzip"] as const
    : ["gzip", "zstd"] as const;
  return makeImage([
    makeLayer(baseEntries(platform), { compression: a }),
    makeLayer(TOP_ENTRIES, { compression: b }),
  ], {
    ...SPEC,
    platform,
    // The diff IDs are the same: a creation time of its own makes each variant an image of its own.
    created: {
      plain: "2023-11-14T22:13:20Z",
      compressed: "2024-01-02T03:04:05Z",
      gzip: "2024-03-04T05:06:07Z",
    }[layers],
  });
}

// ---------------------------------------------------------------------------
// Archive layouts

function json(value: unknown): string {
  return JSON.stringify(value);
}

/**
 * Classic `docker save`: `<id>/layer.tar` (a symlink to the first copy when
 * a layer repeats), `<config hex>.json`, manifest.json, repositories.
 */
function dockerClassic(images: { image: Image; tags: string[] }[]): Member[] {
  const members: Member[] = [];
  const manifest: unknown[] = [];
  const saved = new Map<string, string>();
  for (const { image, tags } of images) {
    const layerPaths: string[] = [];
    let parent = "";
    for (const layer of image.layers) {
      const id = hexOf(sha256(enc.encode(parent + layer.diffId)));
      parent = id;
      const path = `${id}/layer.tar`;
      layerPaths.push(path);
      if (members.some((m) => m.path === `${id}/`)) continue;
      members.push({ type: "dir", path: `${id}/` }, file(`${id}/VERSION`, "1.0"));
      members.push(file(`${id}/json`, json({ id })));
      const first = saved.get(layer.diffId);
      members.push(
        first === undefined
          ? file(path, layer.data)
          : { type: "symlink", path, target: `../${first}` },
      );
      saved.set(layer.diffId, path);
    }
    members.push(file(`${hexOf(image.config.digest)}.json`, image.config.data));
    manifest.push({
      Config: `${hexOf(image.config.digest)}.json`,
      RepoTags: tags,
      Layers: layerPaths,
    });
  }
  members.push(file("manifest.json", json(manifest)), file("repositories", json({})));
  return members;
}

/** Docker 25+: an OCI layout (blobs first) plus manifest.json naming blobs by path. */
function docker25(image: Image, tag: string): Member[] {
  return [
    ...blobMembers(image),
    file(
      "index.json",
      json({
        schemaVersion: 2,
        mediaType: MEDIA_TYPES.oci.index,
        manifests: [{
          mediaType: image.manifest.mediaType,
          digest: image.manifest.digest,
          size: image.manifest.size,
          annotations: {
            "io.containerd.image.name": `docker.io/library/${tag}`,
            "org.opencontainers.image.ref.name": tag.split(":")[1],
          },
        }],
      }),
    ),
    file(
      "manifest.json",
      json([{
        Config: `blobs/sha256/${hexOf(image.config.digest)}`,
        RepoTags: [tag],
        Layers: image.layers.map((l) => `blobs/sha256/${hexOf(l.digest)}`),
      }]),
    ),
    OCI_LAYOUT,
    file("repositories", json({})),
  ];
}

/** An OCI layout as buildx writes it: index.json -> one named index blob -> platform manifests. */
function ociNested(images: Image[], refName: string): Member[] {
  const index = makeIndex(images);
  return [
    ...images.flatMap(blobMembers),
    file(`blobs/sha256/${hexOf(index.manifest.digest)}`, index.manifest.data),
    file(
      "index.json",
      json({
        schemaVersion: 2,
        mediaType: MEDIA_TYPES.oci.index,
        manifests: [{
          mediaType: MEDIA_TYPES.oci.index,
          digest: index.manifest.digest,
          size: index.manifest.size,
          annotations: { "org.opencontainers.image.ref.name": refName },
        }],
      }),
    ),
    OCI_LAYOUT,
  ];
}

// ---------------------------------------------------------------------------
// Running shoal as the test user or root, each with a repository of its own

interface Runner {
  who: string;
  home: string;
  /** The local repository: $XDG_DATA_HOME/shoal. */
  repo: string;
  shoal(args: string[]): Promise<Result>;
  /** Writes a file the runner can read; returns its path. */
  write(name: string, data: Uint8Array): Promise<string>;
  [Symbol.asyncDispose](): Promise<void>;
}

async function runner(asUser: boolean): Promise<Runner> {
  const home = await Deno.makeTempDir({ prefix: "shoal-load-" });
  const env = { HOME: home, XDG_DATA_HOME: `${home}/data` };
  const user = asUser ? await testUser() : undefined;
  if (user) await Deno.chown(home, user.uid, user.gid);
  return {
    who: user?.name ?? "root",
    home,
    repo: `${home}/data/shoal`,
    shoal: (args) =>
      user
        ? runAs(user, shoalScript, args, { env, cwd: home })
        : runCommand(shoalScript, args, { env, cwd: home }),
    write: async (name, data) => {
      const path = `${home}/${name}`;
      await Deno.writeFile(path, data, { mode: 0o644 });
      return path;
    },
    [Symbol.asyncDispose]: () => Deno.remove(home, { recursive: true }),
  };
}

interface Listed {
  reference: string;
  tag: string;
  digest?: string;
  manifestDigest?: string;
  configDigest: string;
  server: string;
  platform: Platform;
  env: string[];
  cmd: string[];
  workdir: string;
  user: string;
  labels: Record<string, string>;
  passwd: string;
  size: number;
  layers: string[];
  squashfsPath: string;
}

async function images(r: Runner): Promise<Listed[]> {
  const out = await r.shoal(["images", "--format", "json"]);
  assertEquals(out.code, 0, out.stderr);
  return JSON.parse(out.stdout);
}

async function loadOk(r: Runner, file: string, name: string): Promise<Result> {
  const out = await r.shoal(["load", file, name]);
  assertEquals(out.code, 0, `${r.who}: shoal load ${file} ${name}: ${out.stderr}`);
  return out;
}

/** The image as the store lists it, with the squashfs checked entry by entry. */
async function assertStored(
  r: Runner,
  reference: string,
  image: Image,
  server: string,
  expect: { layers?: string[] } = {},
): Promise<Listed> {
  const found = (await images(r)).find((i) => i.reference === reference);
  assert(found, `${reference} is not listed for ${r.who}`);
  assertEquals(found.configDigest, image.config.digest);
  assertEquals(found.tag, reference.split(":").pop());
  assertEquals(found.env, SPEC.env);
  assertEquals(found.cmd, SPEC.cmd);
  assertEquals(found.workdir, SPEC.workingDir);
  assertEquals(found.user, "alice");
  assertEquals(found.labels, SPEC.labels);
  assertEquals(found.server, server);
  assertEquals(found.platform.architecture, hostPlatform().architecture);
  assertStringIncludes(found.passwd, "alice:x:1000:1000");
  const layers = expect.layers ?? image.layers.map((l) => l.digest);
  assertEquals(found.layers, layers, reference);
  const st = await Deno.stat(found.squashfsPath);
  assertEquals(found.size, st.size);
  assertEquals(found.squashfsPath.startsWith(`${r.repo}/images/`), true, found.squashfsPath);
  if (r.who !== "root") assertEquals(st.uid, (await testUser()).uid);

  const list = await listImage(found.squashfsPath);
  const entry = (path: string) => {
    const e = list.get(path);
    assert(e, `${path} is missing from ${reference}: ${[...list.keys()].join(" ")}`);
    return e;
  };
  assertEquals([entry("home/alice").mode, entry("home/alice").uid, entry("home/alice").gid], [
    "drwxr-x---",
    1000,
    1000,
  ]);
  assertEquals([entry("home/alice/notes.txt").uid, entry("home/alice/notes.txt").mode], [
    1000,
    "-rw-------",
  ]);
  assertEquals([entry("opt/data").uid, entry("opt/data").gid, entry("opt/data").mode], [
    1234,
    5678,
    "-rw-r-----",
  ]);
  assertEquals([entry("usr/bin/tool").uid, entry("usr/bin/tool").mode], [0, "-rwsr-xr-x"]);
  assertEquals(entry("tmp").mode, "drwxrwxrwt");
  assert(!list.has("tmp/gone"), "the whiteout of the second layer was not applied");
  assertEquals(await cat(found.squashfsPath, "etc/motd"), "hello from layer 2\n");
  assertEquals(await cat(found.squashfsPath, "etc/platform"), platformText(hostPlatform()) + "\n");
  // Its layers are in the blob cache, as a pull would have left them.
  for (const digest of layers) {
    assert((await Deno.stat(`${r.repo}/blobs/sha256/${hexOf(digest)}`)).isFile, digest);
  }
  return found;
}

/** Every layout, plain and gzip, one tag each, into one repository. */
async function loadEveryLayout(asUser: boolean): Promise<void> {
  await using r = await runner(asUser);
  const host = hostPlatform();
  const plain = testImage(host, "plain");
  const compressed = testImage(host, "compressed");
  const gzip = testImage(host, "gzip");
  const other = testImage(OTHER, "compressed");
  const layouts: { name: string; image: Image; members: (tag: string) => Member[] }[] = [
    {
      name: "classic",
      image: plain,
      members: (tag) => dockerClassic([{ image: plain, tags: [tag] }]),
    },
    { name: "docker25", image: plain, members: (tag) => docker25(plain, tag) },
    // Docker with the containerd image store saves compressed layers.
    { name: "containerd", image: gzip, members: (tag) => docker25(gzip, tag) },
    { name: "oci", image: compressed, members: () => ociFlat([other, compressed]) },
    { name: "ocinested", image: compressed, members: () => ociNested([compressed, other], "1.0") },
  ];
  for (const layout of layouts) {
    for (const gzip of [false, true]) {
      const tag = `${layout.name}${gzip ? "-gz" : ""}`;
      const fileName = `${tag}.tar${gzip ? ".gz" : ""}`;
      const path = await r.write(fileName, archive(layout.members(`tool:${tag}`), gzip));
      const out = await loadOk(r, path, `mylab/tool:${tag}`);
      const reference = `load/mylab/tool:${tag}`;
      assertMatch(out.stdout, new RegExp(`^Loaded ${reference} \\(IMAGE ID [0-9a-f]{12}, .*\\)`));
      const format = layout.name.startsWith("oci") ? "oci-archive" : "docker-archive";
      const article = gzip ? "a gzip-compressed" : format === "oci-archive" ? "an" : "a";
      assertStringIncludes(out.stderr, `from ${article} ${format} (`);
      const stored = await assertStored(r, reference, layout.image, `file:${fileName}`);
      if (layout.name === "oci") assertEquals(stored.digest, layout.image.manifest.digest);
      if (layout.name === "ocinested") {
        assertEquals(stored.manifestDigest, layout.image.manifest.digest);
        assertEquals(stored.digest, makeIndex([compressed, other]).manifest.digest);
      }
    }
  }
  // Three images (plain, compressed, gzip), each stored once: a squashfs and metadata each.
  assertEquals((await dirNames(`${r.repo}/images`)).length, 6);
  assertEquals(await dirNames(`${r.repo}/tmp`), []);
}

Deno.test("load as a user: docker-archive (classic, Docker 25+, containerd store) and oci-archive (flat, nested), plain and gzip", async () => {
  await loadEveryLayout(true);
});

Deno.test("load as root: the same archives into root's own repository", async () => {
  await loadEveryLayout(false);
});

Deno.test("loading the same archive twice: up to date, nothing stored again; another name adds a tag", async () => {
  await using r = await runner(true);
  const image = testImage(hostPlatform(), "plain");
  const path = await r.write("tool.tar", archive(dockerClassic([{ image, tags: ["tool:1"] }])));
  await loadOk(r, path, "tool:1");
  const before = await images(r);
  const again = await loadOk(r, path, "tool:1");
  assertEquals(
    again.stdout.trim(),
    `load/tool:1 is up to date (IMAGE ID ${hexOf(image.config.digest).slice(0, 12)})`,
  );
  assert(!again.stderr.includes("Converting"), again.stderr);
  assertEquals(await images(r), before);

  // The same image under a second name: listed twice, stored once.
  await loadOk(r, path, "tool:stable");
  const after = await images(r);
  assertEquals(after.map((i) => i.reference), [
    "load/tool:1",
    "load/tool:stable",
  ]);
  assertEquals(after[0]?.squashfsPath, after[1]?.squashfsPath);
  assertEquals(await dirNames(`${r.repo}/tmp`), []);
});

Deno.test("an archive of several images: the one named, else the host's platform, else a list", async () => {
  await using r = await runner(true);
  const host = hostPlatform();
  const a = testImage(host, "plain");
  // A repeated layer: classic docker save links the second copy to the first.
  const b = makeImage([...a.layers, a.layers[1]!], { ...SPEC, created: "2024-05-06T07:08:09Z" });
  const other = testImage(OTHER, "plain");
  const two = await r.write(
    "two.tar",
    archive(dockerClassic([
      { image: a, tags: ["tool:a"] },
      { image: b, tags: ["tool:b", "tool:bee"] },
    ])),
  );
  await loadOk(r, two, "tool:bee");
  assertEquals((await images(r))[0]?.configDigest, b.config.digest);
  assertEquals((await images(r))[0]?.layers.length, 3);

  const neither = await r.shoal(["load", two, "tool:c"]);
  assertEquals(neither.code, 1);
  assertOneLine(
    neither.stderr,
    /two\.tar holds 2 images and none is named docker\.io\/library\/tool:c; 2 are for linux\/\w+: tool:a \(linux\/\w+\), tool:b \(linux\/\w+\) \(give the name of one of them as NAME\[:TAG\]\)$/,
  );

  const mixed = await r.write(
    "mixed.tar",
    archive(dockerClassic([
      { image: other, tags: ["tool:other"] },
      { image: a, tags: ["tool:host"] },
    ])),
  );
  await loadOk(r, mixed, "mylab/any:1");
  const any = (await images(r)).find((i) => i.reference === "load/mylab/any:1");
  assertEquals(any?.configDigest, a.config.digest);

  // An OCI index with no image for this machine: the platforms are listed; --platform picks one.
  const third: Platform = { os: "linux", architecture: "ppc64le" };
  const foreign = await r.write(
    "foreign.tar",
    archive(ociNested([testImage(OTHER, "compressed"), testImage(third, "compressed")], "1")),
  );
  const none = await r.shoal(["load", foreign, "foreign:1"]);
  assertEquals(none.code, 1);
  assertOneLine(
    none.stderr,
    new RegExp(
      `no image for platform ${platformText(host)}; available: ${
        platformText(OTHER)
      }, linux/ppc64le \\(choose one with --platform\\)$`,
    ),
  );
  const picked = await r.shoal(["load", "--platform", "linux/ppc64le", foreign, "foreign:1"]);
  assertEquals(picked.code, 0, picked.stderr);
  const ppc = (await images(r)).find((i) => i.reference === "load/foreign:1");
  assertEquals(ppc?.platform, third);
  assertEquals(await cat(ppc!.squashfsPath, "etc/platform"), "linux/ppc64le\n");
});

Deno.test("load - reads the archive from standard input", async () => {
  await using r = await runner(true);
  const user = await testUser();
  const image = testImage(hostPlatform(), "compressed");
  const path = await r.write("piped.tar.gz", archive(ociFlat([image]), true));
  const out = await runAs(
    user,
    "sh",
    ["-c", 'exec "$0" load - mylab/piped:2 < "$1"', shoalScript, path],
    { env: { HOME: r.home, XDG_DATA_HOME: `${r.home}/data` }, cwd: r.home },
  );
  assertEquals(out.code, 0, out.stderr);
  assertMatch(out.stdout, /^Loaded load\/mylab\/piped:2 /);
  await assertStored(r, "load/mylab/piped:2", image, "file:stdin");
});

/** The error is one line; the progress lines before it are left out. */
function assertOneLine(stderr: string, pattern: RegExp): void {
  const lines = stderr.trimEnd().split("\n").filter((l) =>
    !/^(Reading|Loading|Converting) /.test(l)
  );
  assertEquals(lines.length, 1, stderr);
  assertMatch(lines[0] ?? "", /^shoal: error: /);
  assertMatch(lines[0] ?? "", pattern);
}

/** Every file under the repository's blobs/ and tmp/ (empty when they do not exist). */
async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string) => {
    for await (const e of Deno.readDir(d)) {
      if (e.isDirectory) await walk(`${d}/${e.name}`);
      else out.push(`${d}/${e.name}`);
    }
  };
  await walk(dir).catch((err) => {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  });
  return out.sort();
}

Deno.test("hostile and broken archives: one line, and the repository is left as it was", async () => {
  await using r = await runner(true);
  const image = testImage(hostPlatform(), "plain");
  const oci = testImage(hostPlatform(), "compressed");
  const classic = dockerClassic([{ image, tags: ["tool:1"] }]);
  const good = archive(classic);
  // One good image first, so "unchanged" is not just "empty".
  await loadOk(r, await r.write("good.tar", good), "tool:good");

  const configName = `${hexOf(image.config.digest)}.json`;
  const layerName = classic.find((m) => m.path.endsWith("/layer.tar"))!.path;
  const replace = (members: Member[], path: string, by: Member | undefined) =>
    members.flatMap((m) => m.path === path ? (by ? [by] : []) : [m]);
  const layerNames = classic.filter((m) => m.path.endsWith("/layer.tar")).map((m) => m.path);
  const manifestWith = (first: string) =>
    file(
      "manifest.json",
      json([{ Config: configName, RepoTags: ["tool:1"], Layers: [first, ...layerNames.slice(1)] }]),
    );
  const ociLayer = `blobs/sha256/${hexOf(oci.layers[0]!.digest)}`;
  const badLayer = makeLayer([{ type: "hardlink", path: "etc/link", target: "etc/nowhere" }], {
    compression: "none",
  });
  const badImage = makeImage([badLayer], SPEC);
  const gzipped = testImage(hostPlatform(), "gzip");
  /** manifest.json with its two layers swapped: each is a valid blob, in the wrong place. */
  const swapLayers = (members: Member[]) =>
    members.map((m) => {
      if (m.path !== "manifest.json" || m.type !== "file") return m;
      const [entry] = JSON.parse(String(m.content));
      entry.Layers.reverse();
      return file("manifest.json", json([entry]));
    });

  const cases: {
    name: string;
    file: string | Uint8Array;
    ref?: string;
    code?: number;
    error: RegExp;
  }[] = [
    {
      name: "a member named with '..'",
      file: archive([...classic, file("../escape", "x")]),
      error: /member "\.\.\/escape" has an absolute path or '\.\.'/,
    },
    {
      name: "an absolute member name",
      file: archive([file("/etc/evil", "x"), ...classic]),
      error: /member "\/etc\/evil" has an absolute path or '\.\.'/,
    },
    {
      name: "a manifest naming a layer not in the archive",
      file: archive(replace(classic, "manifest.json", manifestWith("missing/layer.tar"))),
      error: /manifest\.json names missing\/layer\.tar, which is not in the archive/,
    },
    {
      name: "a manifest naming a path outside the archive",
      file: archive(replace(classic, "manifest.json", manifestWith("../../../etc/passwd"))),
      error: /manifest\.json names \.\.\/\.\.\/\.\.\/etc\/passwd, which is not in the archive/,
    },
    {
      name: "a layer.tar that is a symlink out of the archive",
      file: archive(
        replace(classic, layerName, {
          type: "symlink",
          path: layerName,
          target: "../../etc/shadow",
        }),
      ),
      error: new RegExp(`manifest\\.json names ${layerName}, which is not in the archive`),
    },
    {
      name: "a layer that does not match the config's diff_ids",
      file: archive(replace(classic, layerName, file(layerName, tarArchive(TOP_ENTRIES)))),
      error:
        /layer sha256:[0-9a-f]{12} does not match the image config \(its content hashes to sha256:[0-9a-f]{64}, rootfs\.diff_ids says sha256:[0-9a-f]{64}\)/,
    },
    {
      name: "compressed layers listed in the wrong order (Docker with containerd's store)",
      file: archive(swapLayers(docker25(gzipped, "tool:1"))),
      error: /layer sha256:[0-9a-f]{12} does not match the image config/,
    },
    {
      name: "a config that does not match its name",
      file: archive(replace(classic, configName, file(configName, "{}"))),
      error: /config [0-9a-f]{64}\.json does not match its digest/,
    },
    {
      name: "an OCI blob that does not match its digest",
      file: archive(replace(ociFlat([oci]), ociLayer, file(ociLayer, gzipSync(enc.encode("x"))))),
      error: /blob sha256:[0-9a-f]{64} does not match its digest \(its content hashes to sha256:/,
    },
    {
      name: "an OCI manifest naming a blob not in the archive",
      file: archive(replace(ociFlat([oci]), ociLayer, undefined)),
      error:
        /manifest sha256:[0-9a-f]{64} names blob sha256:[0-9a-f]{64}, which is not in the archive/,
    },
    {
      name: "a layer that would break out (hardlink to nothing)",
      file: archive(dockerClassic([{ image: badImage, tags: ["bad:1"] }])),
      error: /hardlink 'etc\/link' points to 'etc\/nowhere', which no layer below provides/,
    },
    {
      name: "a truncated archive",
      file: good.subarray(0, Math.floor(good.length / 2) + 100),
      error: /truncated archive/,
    },
    {
      name: "a truncated gzip archive",
      file: ((gz) => gz.subarray(0, gz.length / 2))(gzipSync(good)),
      error: /corrupt or truncated gzip data/,
    },
    {
      name: "a zstd-compressed archive",
      file: zstdCompressSync(good),
      error: /is zstd-compressed; shoal load reads tar archives, plain or gzip-compressed/,
    },
    {
      name: "a file that is not an archive",
      file: enc.encode("just some text, ".repeat(100)),
      error: /not a tar archive \(bad header checksum\)/,
    },
    {
      name: "an empty file",
      file: new Uint8Array(),
      error: /not an image archive \(it is empty\)/,
    },
    {
      name: "a tar that holds no image",
      file: archive([file("README", "hello")]),
      error: /not a docker-archive or oci-archive \(no manifest\.json or index\.json in it\)/,
    },
    {
      name: "a manifest.json that is not JSON",
      file: archive(replace(classic, "manifest.json", file("manifest.json", "[{"))),
      error: /manifest\.json is not valid JSON/,
    },
    { name: "a missing file", file: `${r.home}/nothing.tar`, code: 2, error: /no such file/ },
    { name: "a directory", file: r.home, code: 2, error: /is a directory, not an image archive/ },
    {
      name: "an invalid name (refused before the file is looked at)",
      file: `${r.home}/nothing.tar`,
      ref: "Tool:1",
      code: 2,
      error: /invalid image reference "Tool:1": repository name must be lower case$/,
    },
    {
      name: "a name with a digest",
      file: good,
      ref: `tool@${image.config.digest}`,
      code: 2,
      error: /load stores an image under NAME\[:TAG\], not a digest/,
    },
  ];
  const before = await images(r);
  const blobs = await filesUnder(`${r.repo}/blobs`);
  for (const [i, c] of cases.entries()) {
    const path = typeof c.file === "string" ? c.file : await r.write(`hostile-${i}.tar`, c.file);
    const out = await r.shoal(["load", path, c.ref ?? "tool:hostile"]);
    assertEquals(out.code, c.code ?? 1, `${c.name}: ${out.stderr}`);
    assertEquals(out.stdout, "", c.name);
    assertOneLine(out.stderr, c.error);
    assertEquals(await images(r), before, c.name);
    assertEquals(await filesUnder(`${r.repo}/tmp`), [], c.name);
    assertEquals(await filesUnder(`${r.repo}/blobs`), blobs, c.name);
  }
});

Deno.test("archives written by skopeo (docker-archive with linked layers, oci-archive) load", async () => {
  await using r = await runner(true);
  const image = testImage(hostPlatform(), "gzip");
  const layout = `${r.home}/layout`;
  await Deno.mkdir(`${layout}/blobs/sha256`, { recursive: true });
  for (const b of [...image.layers, image.config, image.manifest]) {
    await Deno.writeFile(`${layout}/blobs/sha256/${hexOf(b.digest)}`, b.data);
  }
  await Deno.writeTextFile(`${layout}/oci-layout`, json({ imageLayoutVersion: "1.0.0" }));
  await Deno.writeTextFile(
    `${layout}/index.json`,
    json({
      schemaVersion: 2,
      manifests: [{
        mediaType: image.manifest.mediaType,
        digest: image.manifest.digest,
        size: image.manifest.size,
      }],
    }),
  );
  for (const [dest, name] of [["docker-archive", "skopeo-docker"], ["oci-archive", "skopeo-oci"]]) {
    const path = `${r.home}/${name}.tar`;
    const copy = await runCommand("skopeo", [
      "copy",
      "--quiet",
      `oci:${layout}`,
      `${dest}:${path}${dest === "docker-archive" ? ":mylab/tool:saved" : ""}`,
    ]);
    assertEquals(copy.code, 0, copy.stderr);
    await Deno.chmod(path, 0o644);
    await loadOk(r, path, `mylab/tool:${name}`);
    const stored = await assertStored(
      r,
      `load/mylab/tool:${name}`,
      image,
      `file:${name}.tar`,
      {
        // skopeo writes docker-archive layers uncompressed, so they are cached by diff ID; the
        // oci-archive holds the same image (config), which keeps the files of its first load.
        layers: image.layers.map((l) => l.diffId),
      },
    );
    assertEquals(stored.configDigest, image.config.digest);
  }
});

Deno.test("load --centralized-repository: root stores it for everyone; users read it, may not write it", async () => {
  const { prefix, bin } = await installedShoal();
  const dir = await rootOwnedTempDir();
  const home = await Deno.makeTempDir({ prefix: "shoal-load-root-" });
  try {
    await Deno.writeTextFile(
      `${prefix}/etc/shoal.json`,
      json({ repositories: { centralized: `${dir}/central` } }),
    );
    const image = testImage(hostPlatform(), "plain");
    const path = `${dir}/site.tar.gz`;
    await Deno.writeFile(path, archive(docker25(image, "tool:site"), true), { mode: 0o644 });
    const env = { HOME: home, XDG_DATA_HOME: `${home}/data` };
    const loaded = await runCommand(
      bin,
      ["load", "--centralized-repository", path, "site/tool:1"],
      {
        env,
      },
    );
    assertEquals(loaded.code, 0, loaded.stderr);
    assertMatch(loaded.stdout, /^Loaded load\/site\/tool:1 /);

    const user = await testUser();
    const listed = await runAs(user, bin, [
      "images",
      "--centralized-repository",
      "--format",
      "json",
    ]);
    assertEquals(listed.code, 0, listed.stderr);
    const [entry, ...rest] = JSON.parse(listed.stdout) as Listed[];
    assertEquals(rest, []);
    assertEquals(entry?.reference, "load/site/tool:1");
    assertEquals(entry?.configDigest, image.config.digest);
    const st = await Deno.stat(entry!.squashfsPath);
    assertEquals([st.uid, st.mode! & 0o777], [0, 0o644]);
    assertEquals((await listImage(entry!.squashfsPath)).get("opt/data")?.uid, 1234);

    const refused = await runAs(user, bin, [
      "load",
      "--centralized-repository",
      path,
      "site/tool:2",
    ]);
    assertEquals(refused.code, 1);
    assertOneLine(refused.stderr, /the centralized repository ".*" is written by root only/);
    assertEquals(await filesUnder(`${dir}/central/tmp`), []);
  } finally {
    await Deno.remove(`${prefix}/etc/shoal.json`).catch(() => {});
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test("a load is stored as load/NAME: a pulled image of the same name stays, and the short name is refused as ambiguous", async () => {
  await using r = await runner(false);
  // What a pull of docker.io/library/tool:1 would have stored.
  const store = openStore(r.repo);
  const pulled = fakeImage("pulled", {
    registry: "docker.io",
    repository: "library/tool",
    tag: "1",
  });
  {
    await using work = await store.tempDir();
    await store.commit(pulled, await fakeSquashfs(work.path, "pulled"));
  }
  const image = testImage(hostPlatform(), "plain");
  const path = await r.write("tool.tar", archive(ociFlat([image])));
  const out = await loadOk(r, path, "tool:1");
  assertMatch(out.stdout, /^Loaded load\/tool:1 \(IMAGE ID /);
  const listed = await images(r);
  assertEquals(listed.map((i) => [i.reference, i.configDigest]), [
    ["docker.io/library/tool:1", pulled.configDigest],
    ["load/tool:1", image.config.digest],
  ]);

  const ambiguous = await r.shoal(["rmi", "tool:1"]);
  assertEquals(ambiguous.code, 1);
  assertOneLine(
    ambiguous.stderr,
    /"tool:1" could be 2 images: docker\.io\/library\/tool:1, load\/tool:1 \(give the full name of the one you mean, as `shoal images` lists it\)$/,
  );
  const removed = await r.shoal(["rmi", "load/tool:1"]);
  assertEquals([removed.code, removed.stdout.split("\n")[0]], [0, "Untagged: load/tool:1"]);
  assertEquals((await images(r)).map((i) => i.reference), ["docker.io/library/tool:1"]);

  for (const name of ["127.0.0.1:5000/tool:1", `tool@${image.manifest.digest}`]) {
    const refused = await r.shoal(["load", path, name]);
    assertEquals(refused.code, 2, refused.stderr);
    assertOneLine(
      refused.stderr,
      /load stores an image (as load\/NAME\[:TAG\]|under NAME\[:TAG\])/,
    );
  }
  assertEquals(await filesUnder(`${r.repo}/tmp`), []);
});
