/**
 * The tar2sqfs driver: compression settings reach the image, the file appears
 * atomically, failures (bad settings, missing tool, disk full) leave nothing
 * behind, and an unprivileged user gets root-owned entries kept root-owned.
 */
import { fileURLToPath } from "node:url";
import { ShoalError } from "../mod/errors.ts";
import { buildSquashfs } from "../mod/image/squashfs.ts";
import { lz4Decompress, storeLz4ExpansionsRaw } from "../mod/image/squashfs_lz4.ts";
import type { LayerBlob } from "../mod/image/layer.ts";
import {
  assert,
  assertEquals,
  assertRejects,
  assertStringIncludes,
  assertThrows,
} from "./support/assert.ts";
import { runCommand } from "./support/shoal.ts";
import { cat, dirNames, listImage, squashOptions, writeLayer } from "./support/squashfs.ts";
import { runAs, testUser } from "./support/users.ts";

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "shoal-squashfs-" });
  try {
    await Deno.mkdir(`${dir}/out`);
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function superblock(image: string): Promise<string> {
  const r = await runCommand("unsquashfs", ["-s", image]);
  assertEquals(r.code, 0, r.stderr);
  return r.stdout;
}

const sample = (dir: string) =>
  writeLayer(dir, [
    { path: "etc/passwd", content: "root:x:0:0::/root:/bin/sh\n" },
    { path: "data", content: "some data ".repeat(1000) },
  ]);

Deno.test("compression, level and block size reach the image; zstd defaults to level 3", async () => {
  await withDir(async (dir) => {
    const layer = await sample(dir);
    const image = `${dir}/out/image.sqfs`;
    const result = await buildSquashfs([layer], image, squashOptions());
    const info = await superblock(image);
    assertStringIncludes(info, "Compression zstd");
    assertStringIncludes(info, "compression-level 3");
    assertStringIncludes(info, "Block size 131072");
    assertEquals(result.size, (await Deno.stat(image)).size);
    assertEquals(result.passwd, "root:x:0:0::/root:/bin/sh\n");

    for (
      const [compression, level, expect] of [
        ["gzip", 1, "compression-level 1"],
        ["lz4", 9, "Compression lz4"], // lz4 has no level: ignored
        ["xz", undefined, "Compression xz"],
      ] as const
    ) {
      await buildSquashfs(
        [layer],
        image,
        squashOptions({ compression, level, blockSizeKiB: 64, jobs: 1 }),
      );
      const sb = await superblock(image);
      assertStringIncludes(sb, `Compression ${compression}`);
      assertStringIncludes(sb, expect);
      assertStringIncludes(sb, "Block size 65536");
      assertEquals(await cat(image, "data"), "some data ".repeat(1000));
    }
    assertEquals(await dirNames(`${dir}/out`), ["image.sqfs"]);
  });
});

Deno.test("bad settings and a missing tar2sqfs fail with one line and leave nothing", async () => {
  await withDir(async (dir) => {
    const layer = await sample(dir);
    const image = `${dir}/out/image.sqfs`;
    const level = await assertRejects(
      () => buildSquashfs([layer], image, squashOptions({ compression: "gzip", level: 12 })),
      ShoalError,
      "compression level 12 is out of range for gzip (1 to 9)",
    );
    assertStringIncludes(level.hint ?? "", "squashfs.level");
    const missing = await assertRejects(
      () => buildSquashfs([layer], image, squashOptions({ tar2sqfs: `${dir}/no-tar2sqfs` })),
      ShoalError,
      `cannot run ${dir}/no-tar2sqfs`,
    );
    assertStringIncludes(missing.hint ?? "", "runtime.tar2sqfs");
    assertEquals(await dirNames(`${dir}/out`), []);
  });
});

Deno.test("an existing image is replaced only by a complete new one", async () => {
  await withDir(async (dir) => {
    const image = `${dir}/out/image.sqfs`;
    await buildSquashfs([await sample(dir)], image, squashOptions());
    const before = await Deno.readFile(image);
    const broken = await writeLayer(dir, [{ path: "x", type: "hardlink", linkpath: "missing" }]);
    await assertRejects(() => buildSquashfs([broken], image, squashOptions()), ShoalError);
    assertEquals(await Deno.readFile(image), before);
    assertEquals(await dirNames(`${dir}/out`), ["image.sqfs"]);
    const next = await writeLayer(dir, [{ path: "new", content: "new" }]);
    await buildSquashfs([next], image, squashOptions());
    assertEquals(await cat(image, "new"), "new");
  });
});

Deno.test("a full disk gives tar2sqfs's own message and removes the partial image", async () => {
  await withDir(async (dir) => {
    const small = `${dir}/out`;
    const mount = await runCommand("mount", ["-t", "tmpfs", "-o", "size=256k", "tmpfs", small]);
    assertEquals(mount.code, 0, mount.stderr);
    try {
      const noise = new Uint8Array(1 << 20);
      for (let at = 0; at < noise.length; at += 65536) {
        crypto.getRandomValues(noise.subarray(at, at + 65536));
      }
      const layer = await writeLayer(dir, [{ path: "noise", content: noise }]);
      const err = await assertRejects(
        () => buildSquashfs([layer], `${small}/image.sqfs`, squashOptions()),
        ShoalError,
        "tar2sqfs failed",
      );
      // tar2sqfs's words for ENOSPC while writing the image.
      assertStringIncludes(err.message, "I/O error");
      assertStringIncludes(err.hint ?? "", `check free space and quota in ${small}`);
      assertEquals(await dirNames(small), []);
    } finally {
      const umount = await runCommand("umount", [small]);
      assert(umount.code === 0, umount.stderr);
    }
  });
});

Deno.test("an unprivileged user converts a layer and root-owned entries stay root-owned", async () => {
  const user = await testUser();
  await withDir(async (dir) => {
    await Deno.chmod(dir, 0o755);
    await Deno.chown(`${dir}/out`, user.uid, user.gid);
    const layer = await writeLayer(dir, [
      { path: "usr/bin/passwd", content: "#!", mode: 0o4755, uid: 0, gid: 0 },
      { path: "var/mail", type: "directory", mode: 0o2775, gid: 8 },
      { path: "home/me/file", content: "mine", uid: 1000, gid: 1000 },
      { path: "dev/console", type: "chardev", devmajor: 5, devminor: 1, mode: 0o600 },
    ]);
    await Deno.chmod(layer.path, 0o644);
    const module = fileURLToPath(new URL("../mod/image/squashfs.ts", import.meta.url));
    const script = `
      import { buildSquashfs } from ${JSON.stringify(module)};
      const layer = JSON.parse(Deno.args[0]);
      await buildSquashfs([layer], Deno.args[1], {
        tar2sqfs: "/usr/bin/tar2sqfs", compression: "zstd", blockSizeKiB: 128, maxBytes: 2 ** 30,
      });
    `;
    const image = `${dir}/out/image.sqfs`;
    const r = await runAs(user, Deno.execPath(), [
      "run",
      "-A",
      "--no-config",
      "--no-check",
      "-",
      JSON.stringify(layer satisfies LayerBlob),
      image,
    ], { stdin: script });
    assertEquals(r.code, 0, r.stderr);
    assertEquals((await Deno.stat(image)).uid, user.uid);
    const list = await listImage(image);
    assertEquals(list.get("usr/bin/passwd"), { mode: "-rwsr-xr-x", uid: 0, gid: 0, size: "2" });
    assertEquals(list.get("var/mail")?.mode, "drwxrwsr-x");
    assertEquals(list.get("var/mail")?.gid, 8);
    assertEquals([list.get("home/me/file")?.uid, list.get("home/me/file")?.gid], [1000, 1000]);
    assertEquals(list.get("dev/console")?.mode, "crw-------");
  });
});

Deno.test("tar2sqfs dying in mid-stream is reported with its own message", async () => {
  await withDir(async (dir) => {
    // Writes a little of the image, complains and exits, as on a write error.
    const fake = `${dir}/tar2sqfs`;
    await Deno.writeTextFile(
      fake,
      `#!/bin/sh\nfor last; do :; done\nhead -c 4096 >"$last"\necho "$last: write: broken device" >&2\nexit 3\n`,
    );
    await Deno.chmod(fake, 0o755);
    const layer = await writeLayer(dir, [{ path: "big", content: new Uint8Array(8 << 20) }]);
    await assertRejects(
      () => buildSquashfs([layer], `${dir}/out/image.sqfs`, squashOptions({ tar2sqfs: fake })),
      ShoalError,
      "tar2sqfs failed: ",
    ).then((err) => assertStringIncludes(err.message, ".tmp: write: broken device"));
    assertEquals(await dirNames(`${dir}/out`), []);
  });
});

Deno.test("lz4 images read with unsquashfs: small tables that lz4 made larger are stored raw", async () => {
  await withDir(async (dir) => {
    const entries = [
      { path: "etc/passwd", content: "root:x:0:0::/root:/bin/sh\n" },
      { path: "home/u/x", content: "y", uid: 1000, gid: 1000 },
    ];
    const layer = await writeLayer(dir, entries);
    // tar2sqfs 1.2 alone: its one-block id table is "compressed" to more bytes than it has.
    const tar = await writeLayer(dir, entries, "none");
    const plain = `${dir}/plain.sqfs`;
    const made = await runCommand("sh", [
      "-c",
      `tar2sqfs --quiet --compressor lz4 "${plain}" < "${tar.path}"`,
    ]);
    assertEquals(made.code, 0, made.stderr);
    const before = await runCommand("unsquashfs", ["-lln", plain]);
    const content = async (image: string) => (await runCommand("sqfs2tar", [image])).stdout.length;
    const size = await content(plain);
    assertEquals(storeLz4ExpansionsRaw(plain), before.code === 0 ? 0 : 1);
    const after = await runCommand("unsquashfs", ["-lln", plain]);
    assertEquals(after.code, 0, after.stderr);
    assertStringIncludes(after.stdout, "1000/1000");
    assertEquals(storeLz4ExpansionsRaw(plain), 0, "a second pass finds nothing to do");
    assertEquals(await content(plain), size);

    // What a pull writes is readable as it is.
    const image = `${dir}/out/image.sqfs`;
    await buildSquashfs([layer], image, squashOptions({ compression: "lz4" }));
    const listed = await listImage(image);
    assertEquals(listed.get("home/u/x")?.uid, 1000);
    assertEquals(listed.get("etc/passwd")?.uid, 0);
    assertEquals(await cat(image, "etc/passwd"), "root:x:0:0::/root:/bin/sh\n");
    // Other compressors are left alone.
    await buildSquashfs([layer], image, squashOptions({ compression: "zstd" }));
    assertEquals(storeLz4ExpansionsRaw(image), 0);
  });
});

Deno.test("lz4Decompress: literals, overlapping matches, and damage", () => {
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  assertEquals(text(lz4Decompress(Uint8Array.from([0x40, 0x61, 0x62, 0x63, 0x64]), 4)), "abcd");
  // One literal, then a match 1 back of 7 bytes: a run.
  assertEquals(text(lz4Decompress(Uint8Array.from([0x13, 0x61, 0x01, 0x00]), 8)), "aaaaaaaa");
  // 15+ lengths take extra bytes: 15 + 3 literals.
  const long = Uint8Array.from([0xf0, 3, ...new TextEncoder().encode("x".repeat(18))]);
  assertEquals(text(lz4Decompress(long, 18)), "x".repeat(18));
  for (
    const [bytes, size] of [
      [[0x40, 0x61], 4], // cut short
      [[0x13, 0x61, 0x02, 0x00], 8], // match before the start
      [[0x40, 0x61, 0x62, 0x63, 0x64], 3], // longer than said
      [[0x40, 0x61, 0x62, 0x63, 0x64], 5], // shorter than said
    ] as const
  ) {
    assertThrows(() => lz4Decompress(Uint8Array.from(bytes), size), Error, "damaged lz4 block");
  }
});
