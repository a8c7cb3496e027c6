/**
 * The test-image tooling writes what it claims: GNU tar, an independent
 * reader, sees every entry kind, owner, mode, time, PAX long name and xattr;
 * compressed layers decompress to the tar their diffId names. Other tests
 * trust these layers to exercise the engine, so they are checked here once.
 */
import { zstdDecompressSync } from "node:zlib";
import { assertEquals, assertMatch, assertStringIncludes } from "./support/assert.ts";
import { runCommand } from "./support/shoal.ts";
import { opaqueWhiteout, tarArchive, type TarEntry, whiteout } from "./support/tar.ts";
import { busyboxEntries, makeImage, makeLayer, MEDIA_TYPES, sha256 } from "./support/oci.ts";

async function gnuTarList(tar: Uint8Array): Promise<{ code: number; out: string }> {
  const dir = await Deno.makeTempDir({ prefix: "shoal-tar-test-" });
  try {
    await Deno.writeFile(`${dir}/layer.tar`, tar);
    const r = await runCommand(
      "tar",
      ["--xattrs", "--numeric-owner", "--full-time", "-tvvf", `${dir}/layer.tar`],
      { env: { TZ: "UTC" } },
    );
    return { code: r.code, out: r.stdout + r.stderr };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const longName = `deep/${"n".repeat(150)}`;
const entries: TarEntry[] = [
  { type: "dir", path: "etc" },
  { type: "dir", path: "tmp", mode: 0o1777 },
  {
    type: "file",
    path: "etc/suid",
    content: "x",
    mode: 0o4755,
    uid: 1000,
    gid: 100,
    mtime: 1_000_000_000,
    xattrs: { "user.note": "hello" },
  },
  { type: "file", path: longName, content: "long\n", uid: 3_000_000 },
  { type: "symlink", path: "etc/sh", target: "/bin/busybox" },
  { type: "hardlink", path: "etc/hard", target: "etc/suid" },
  { type: "char", path: "dev/null", major: 1, minor: 3, mode: 0o666 },
  { type: "block", path: "dev/loop0", major: 7, minor: 0 },
  { type: "fifo", path: "run/fifo" },
  whiteout("usr/gone"),
  opaqueWhiteout("var/cache/"),
  { type: "file", path: "/etc/abs", content: "abs" },
  { type: "file", path: "../../escape", content: "up" },
];

Deno.test("tar writer: GNU tar reads every entry kind, owner, mode, time, long name and xattr", async () => {
  const { code, out } = await gnuTarList(tarArchive(entries));
  assertEquals(code, 0, out);
  for (
    const line of [
      "drwxr-xr-x  0/0               0 2023-11-14 22:13:20 etc/",
      "drwxrwxrwt  0/0               0 2023-11-14 22:13:20 tmp/",
      "-rwsr-xr-x* 1000/100          1 2001-09-09 01:46:40 etc/suid",
      "  x: 5 user.note",
      `-rw-r--r--  3000000/0         5 2023-11-14 22:13:20 ${longName}`,
      "lrwxrwxrwx  0/0               0 2023-11-14 22:13:20 etc/sh -> /bin/busybox",
      "hrw-r--r--  0/0               0 2023-11-14 22:13:20 etc/hard link to etc/suid",
      "crw-rw-rw-  0/0             1,3 2023-11-14 22:13:20 dev/null",
      "brw-r--r--  0/0             7,0 2023-11-14 22:13:20 dev/loop0",
      "prw-r--r--  0/0               0 2023-11-14 22:13:20 run/fifo",
      "-rw-r--r--  0/0               0 2023-11-14 22:13:20 usr/.wh.gone",
      "-rw-r--r--  0/0               0 2023-11-14 22:13:20 var/cache/.wh..wh..opq",
      "-rw-r--r--  0/0               3 2023-11-14 22:13:20 /etc/abs",
      "-rw-r--r--  0/0               2 2023-11-14 22:13:20 ../../escape",
    ]
  ) {
    assertStringIncludes(out, line);
  }
});

Deno.test("tar writer: a header that claims more data than follows is a truncated archive", async () => {
  const tar = tarArchive([{ type: "file", path: "big", content: "tiny", headerSize: 1 << 20 }]);
  const { code, out } = await gnuTarList(tar);
  assertEquals(code, 2, out);
  assertMatch(out, / 1048576 2023-11-14 22:13:20 big\n/);
  assertMatch(out, /not recoverable/);
});

Deno.test("layers: gzip, zstd and plain blobs decompress to the tar their diffId names", async () => {
  const tar = tarArchive(entries);
  for (const compression of ["gzip", "zstd", "none"] as const) {
    const layer = makeLayer(entries, { compression });
    assertEquals(layer.diffId, sha256(tar));
    assertEquals(layer.digest, sha256(layer.data));
    assertEquals(layer.size, layer.data.length);
    assertEquals(layer.mediaType, MEDIA_TYPES.oci.layer[compression]);
    let plain = layer.data;
    if (compression === "zstd") plain = zstdDecompressSync(layer.data);
    if (compression === "gzip") {
      const gunzip = new Deno.Command("gzip", { args: ["-dc"], stdin: "piped", stdout: "piped" })
        .spawn();
      const w = gunzip.stdin.getWriter();
      await w.write(layer.data);
      await w.close();
      plain = (await gunzip.output()).stdout;
    }
    assertEquals(sha256(plain), layer.diffId, compression);
  }
  assertEquals(
    makeLayer(entries, { format: "docker" }).mediaType,
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
  );
});

Deno.test("images: config and manifest reference each other and every layer", () => {
  const base = makeLayer(busyboxEntries());
  const top = makeLayer([{ type: "file", path: "etc/motd", content: "hi\n" }], {
    compression: "zstd",
  });
  const image = makeImage([base, top], {
    format: "docker",
    platform: { os: "linux", architecture: "arm64", variant: "v8" },
    env: ["A=1"],
    entrypoint: ["/bin/sh", "-c"],
    cmd: ["echo hi"],
    workingDir: "/srv",
    user: "1000:100",
    labels: { "org.example": "yes" },
  });
  const config = JSON.parse(new TextDecoder().decode(image.config.data));
  assertEquals(config.architecture, "arm64");
  assertEquals(config.variant, "v8");
  assertEquals(config.config, {
    Env: ["A=1"],
    Entrypoint: ["/bin/sh", "-c"],
    Cmd: ["echo hi"],
    WorkingDir: "/srv",
    User: "1000:100",
    Labels: { "org.example": "yes" },
  });
  assertEquals(config.rootfs, { type: "layers", diff_ids: [base.diffId, top.diffId] });
  const manifest = JSON.parse(new TextDecoder().decode(image.manifest.data));
  assertEquals(manifest.mediaType, MEDIA_TYPES.docker.manifest);
  assertEquals(manifest.config.digest, image.config.digest);
  assertEquals(manifest.config.mediaType, MEDIA_TYPES.docker.config);
  assertEquals(
    manifest.layers.map((l: { digest: string; size: number }) => [l.digest, l.size]),
    [[base.digest, base.size], [top.digest, top.size]],
  );
});
