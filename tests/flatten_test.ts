/**
 * Layer flattening, checked on the squashfs image that tar2sqfs builds from
 * the flattened stream: whiteouts, opaque directories, replacements,
 * hardlinks, special files, ownership, and every hostile case.
 */
import { createWriteStream } from "node:fs";
import { fileURLToPath } from "node:url";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGzip } from "node:zlib";
import { ShoalError } from "../mod/errors.ts";
import { checksum, makeHeader } from "../mod/image/tar/header.ts";
import { encodeHeader } from "../mod/image/tar/writer.ts";
import { buildSquashfs, type SquashfsResult } from "../mod/image/squashfs.ts";
import type { LayerBlob } from "../mod/image/layer.ts";
import { assert, assertEquals, assertRejects, assertStringIncludes } from "./support/assert.ts";
import { runCommand } from "./support/shoal.ts";
import {
  cat,
  concat,
  dirNames,
  inode,
  listImage,
  squashOptions,
  tarOf,
  writeLayer,
  xattrsOf,
} from "./support/squashfs.ts";

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "shoal-flatten-" });
  try {
    await Deno.mkdir(`${dir}/out`);
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function build(
  dir: string,
  layers: LayerBlob[],
  maxBytes = 2 ** 30,
): Promise<{ image: string; result: SquashfsResult }> {
  const image = `${dir}/out/image.sqfs`;
  const result = await buildSquashfs(layers, image, squashOptions({ maxBytes }));
  return { image, result };
}

/** The conversion fails with a one-line ShoalError and leaves nothing in the output directory. */
async function refused(
  dir: string,
  layers: LayerBlob[],
  includes: string[],
  maxBytes = 2 ** 30,
): Promise<void> {
  const err = await assertRejects(() => build(dir, layers, maxBytes), ShoalError);
  for (const s of includes) assertStringIncludes(err.message, s);
  assert(!err.message.includes("\n"), `multi-line message: ${err.message}`);
  assertEquals(await dirNames(`${dir}/out`), []);
}

const label = (layer: LayerBlob) => `layer ${layer.digest.slice(0, 19)}`;

Deno.test("whiteouts hide files and directories, opaque directories hide lower children", async () => {
  await withDir(async (dir) => {
    const base = await writeLayer(dir, [
      { path: "./", type: "directory", mode: 0o751 },
      { path: "a", type: "directory" },
      { path: "a/keep", content: "keep" },
      { path: "a/gone", content: "gone" },
      { path: "d", type: "directory" },
      { path: "d/x", content: "x" },
      { path: "d/sub/y", content: "y" },
      { path: "o", type: "directory", mode: 0o750 },
      { path: "o/old", content: "old" },
      { path: "o/sub/z", content: "z" },
      { path: "f", content: "file becomes directory" },
      { path: "g", type: "directory" },
      { path: "g/child", content: "under a directory that becomes a file" },
    ]);
    const top = await writeLayer(dir, [
      { path: "a/.wh.gone" },
      { path: ".wh.d" },
      { path: "o", type: "directory", mode: 0o700 },
      { path: "o/.wh..wh..opq" },
      { path: "o/new", content: "new" },
      { path: "f", type: "directory" },
      { path: "f/inner", content: "inner" },
      { path: "g", content: "now a file" },
    ]);
    const { image } = await build(dir, [base, top]);
    const paths = [...(await listImage(image)).keys()].sort();
    assertEquals(paths, ["", "a", "a/keep", "f", "f/inner", "g", "o", "o/new"]);
    const list = await listImage(image);
    assertEquals(list.get("")?.mode, "drwxr-x--x");
    assertEquals(list.get("o")?.mode, "drwx------");
    assertEquals(list.get("f")?.mode, "drwxr-xr-x");
    assertEquals(list.get("g")?.mode, "-rw-r--r--");
    assertEquals(await cat(image, "g"), "now a file");
    assertEquals(await cat(image, "a/keep"), "keep");
  });
});

Deno.test("whiteouts never hide entries of their own layer, and work at any entry order", async () => {
  await withDir(async (dir) => {
    const base = await writeLayer(dir, [
      { path: "w/old", content: "old" },
      { path: "r/lower", content: "lower" },
    ]);
    const top = await writeLayer(dir, [
      // The whiteout comes after its replacement: still only the lower one goes.
      { path: "w", type: "directory" },
      { path: "w/fresh", content: "fresh" },
      { path: ".wh.w" },
      // Opaque marker last, as the spec allows.
      { path: "r/upper", content: "upper" },
      { path: "r/.wh..wh..opq" },
    ]);
    const { image } = await build(dir, [base, top]);
    const paths = [...(await listImage(image)).keys()].sort();
    assertEquals(paths, ["", "r", "r/upper", "w", "w/fresh"]);
  });
});

Deno.test("hardlinks within and across layers; a link keeps lower content when its target is replaced", async () => {
  await withDir(async (dir) => {
    const base = await writeLayer(dir, [
      { path: "h/a", content: "A0" },
      { path: "h/b", type: "hardlink", linkpath: "h/a" },
      { path: "h/c", content: "C0", uid: 7, mode: 0o600 },
      { path: "h/d", type: "hardlink", linkpath: "h/c" },
      { path: "h/e", type: "hardlink", linkpath: "h/d" },
    ]);
    const top = await writeLayer(dir, [
      { path: "h/c", content: "C1" },
      { path: "h/f", type: "hardlink", linkpath: "h/a" },
    ]);
    const { image } = await build(dir, [base, top]);
    const a = await inode(image, "h/a");
    assertEquals(a.links, 3);
    assertEquals((await inode(image, "h/b")).inode, a.inode);
    assertEquals((await inode(image, "h/f")).inode, a.inode);
    assertEquals(await cat(image, "h/b"), "A0");
    assertEquals(await cat(image, "h/c"), "C1");
    assertEquals(await cat(image, "h/d"), "C0");
    const d = await inode(image, "h/d");
    assertEquals((await inode(image, "h/e")).inode, d.inode);
    assert(d.inode !== (await inode(image, "h/c")).inode);
    const list = await listImage(image);
    assertEquals(list.get("h/d")?.uid, 7);
    assertEquals(list.get("h/d")?.mode, "-rw-------");
  });
});

Deno.test("special files, setuid bits, owners, mtimes and xattrs are kept", async () => {
  await withDir(async (dir) => {
    const bin = new Uint8Array([1, 0, 0, 2, 0xff]);
    const layer = await writeLayer(dir, [
      { path: "./", type: "directory", mode: 0o755, mtime: 1600000000 },
      { path: "usr/bin/su", content: "#!", mode: 0o4755 },
      { path: "usr/bin/wall", content: "#!", mode: 0o2755, gid: 5 },
      { path: "tmp", type: "directory", mode: 0o1777 },
      { path: "home/user", type: "directory", uid: 1000, gid: 1000, mode: 0o700 },
      { path: "home/user/notes", content: "n", uid: 1000, gid: 1000, mtime: 1700000000.75 },
      { path: "dev/null", type: "chardev", devmajor: 1, devminor: 3, mode: 0o666 },
      { path: "dev/sda", type: "blockdev", devmajor: 8, devminor: 0, mode: 0o660, gid: 6 },
      { path: "run/fifo", type: "fifo", mode: 0o620 },
      { path: "bin/sh", type: "symlink", linkpath: "/usr/bin/su" },
      {
        path: "x",
        content: "xattrs",
        xattrs: new Map([
          ["user.comment", new TextEncoder().encode("hello")],
          ["trusted.bin", bin],
          ["system.posix_acl_access", new Uint8Array([2, 0, 0, 0])],
        ]),
      },
    ]);
    const { image } = await build(dir, [layer]);
    const list = await listImage(image);
    assertEquals(list.get("")?.mode, "drwxr-xr-x");
    assertEquals(list.get("usr/bin/su"), { mode: "-rwsr-xr-x", uid: 0, gid: 0, size: "2" });
    assertEquals(list.get("usr/bin/wall")?.mode, "-rwxr-sr-x");
    assertEquals(list.get("usr/bin/wall")?.gid, 5);
    assertEquals(list.get("tmp")?.mode, "drwxrwxrwt");
    assertEquals(list.get("home/user")?.mode, "drwx------");
    assertEquals([list.get("home/user")?.uid, list.get("home/user")?.gid], [1000, 1000]);
    assertEquals(list.get("home/user/notes")?.uid, 1000);
    assertEquals(list.get("dev/null"), { mode: "crw-rw-rw-", uid: 0, gid: 0, size: "1,  3" });
    assertEquals(list.get("dev/sda")?.mode, "brw-rw----");
    assertEquals(list.get("dev/sda")?.size, "8,  0");
    assertEquals(list.get("run/fifo")?.mode, "prw--w----");
    assertEquals(list.get("bin/sh")?.link, "/usr/bin/su");
    assertEquals((await inode(image, "home/user/notes")).mtime, 1700000000);
    assertEquals((await inode(image, "")).mtime, 1600000000);
    assertEquals(await xattrsOf(image, "x"), ["trusted.bin=0x01000002FF", "user.comment=hello"]);
  });
});

Deno.test("long names: PAX path and linkpath, GNU 'L' and 'K' records; absolute names land inside", async () => {
  await withDir(async (dir) => {
    const long = `${"deep/".repeat(60)}file`;
    const gnuName = `${"gnu/".repeat(40)}name`;
    const gnuLink = `${"target/".repeat(20)}t`;
    const tar = concat([
      (await tarOf([
        { path: long, content: "pax" },
        { path: "l", type: "symlink", linkpath: "y".repeat(200) },
        { path: "/etc/abs", content: "absolute" },
        { path: "//./etc//dots/../clean", content: "cleaned" },
      ])).subarray(0, -1024),
      gnuLongRecord("L", gnuName),
      gnuLongRecord("K", gnuLink),
      encodeHeader(makeHeader({ path: "truncated-name", type: "symlink", linkpath: "short" })),
      new Uint8Array(1024),
    ]);
    const { image } = await build(dir, [await writeLayer(dir, tar)]);
    const list = await listImage(image);
    assertEquals(await cat(image, long), "pax");
    assertEquals(list.get("l")?.link, "y".repeat(200));
    assertEquals(await cat(image, "etc/abs"), "absolute");
    assertEquals(await cat(image, "etc/clean"), "cleaned");
    assertEquals(list.get(gnuName)?.link, gnuLink);
  });
});

/** A GNU long name ('L') or long link ('K') record carrying `value`. */
function gnuLongRecord(flag: "L" | "K", value: string): Uint8Array {
  const data = new TextEncoder().encode(`${value}\0`);
  const block = encodeHeader(
    makeHeader({ path: "././@LongLink", size: data.length, type: "file" }),
  );
  block[156] = flag.charCodeAt(0);
  setChecksum(block);
  const padded = new Uint8Array(Math.ceil(data.length / 512) * 512);
  padded.set(data);
  return concat([block, padded]);
}

function setChecksum(block: Uint8Array): void {
  block.set(new TextEncoder().encode(checksum(block).toString(8).padStart(6, "0")), 148);
  block[154] = 0;
  block[155] = 0x20;
}

Deno.test("zstd, gzip and uncompressed layers mix; /etc/passwd and /etc/group come from the top", async () => {
  await withDir(async (dir) => {
    const base = await writeLayer(dir, [
      { path: "etc/passwd", content: "root:x:0:0::/root:/bin/sh\n" },
      { path: "etc/group", content: "root:x:0:\n" },
      { path: "one", content: "1" },
    ], "zstd");
    const middle = await writeLayer(dir, [{ path: "two", content: "2" }], "none");
    const top = await writeLayer(dir, [
      {
        path: "etc/passwd",
        content: "root:x:0:0::/root:/bin/sh\nu:x:1000:1000::/home/u:/bin/sh\n",
      },
      { path: "three", content: "3" },
    ], "gzip");
    const { image, result } = await build(dir, [base, middle, top]);
    assertEquals(
      await cat(image, "one") + await cat(image, "two") + await cat(image, "three"),
      "123",
    );
    assertStringIncludes(result.passwd ?? "", "u:x:1000:1000");
    assertEquals(result.group, "root:x:0:\n");
    // one, two, three, etc/passwd, etc/group (directories are implied, not counted)
    assertEquals(result.entries, 5);
  });
});

Deno.test("hostile paths: '..' escapes and hardlinks out of the image are refused", async () => {
  await withDir(async (dir) => {
    const escape = await writeLayer(dir, [
      { path: "ok", content: "fine" },
      { path: "a/../../etc/evil", content: "x" },
    ]);
    await refused(dir, [escape], [label(escape), "'a/../../etc/evil'", "above the image root"]);
    const linkOut = await writeLayer(dir, [{
      path: "l",
      type: "hardlink",
      linkpath: "../../etc/shadow",
    }]);
    await refused(dir, [linkOut], [label(linkOut), "above the image root"]);
  });
});

Deno.test("hardlinks to missing targets, to directories, or forward in the layer are refused", async () => {
  await withDir(async (dir) => {
    const missing = await writeLayer(dir, [{ path: "l", type: "hardlink", linkpath: "nowhere" }]);
    await refused(dir, [missing], [label(missing), "'l' points to 'nowhere'", "no layer below"]);
    const toDir = await writeLayer(dir, [
      { path: "d", type: "directory" },
      { path: "l", type: "hardlink", linkpath: "d" },
    ]);
    await refused(dir, [toDir], [label(toDir), "directory"]);
    const forward = await writeLayer(dir, [
      { path: "l", type: "hardlink", linkpath: "later" },
      { path: "later", content: "x" },
    ]);
    await refused(dir, [forward], ["before it appears"]);
    // A removal between the file and the link: the target is gone when the link is made.
    const base = await writeLayer(dir, [{ path: "t", content: "t" }]);
    const removal = await writeLayer(dir, [{ path: ".wh.t" }]);
    const link = await writeLayer(dir, [{ path: "l", type: "hardlink", linkpath: "t" }]);
    await refused(dir, [base, removal, link], [label(link), "'t'", label(removal), "removes"]);
  });
});

Deno.test("entries through symlinks are refused, within a layer and over a lower layer", async () => {
  await withDir(async (dir) => {
    const same = await writeLayer(dir, [
      { path: "s", type: "symlink", linkpath: "/etc" },
      { path: "s/passwd", content: "x" },
    ]);
    await refused(dir, [same], [label(same), "'s/passwd'", "under 's'"]);
    const lower = await writeLayer(dir, [
      { path: "usr/bin", type: "directory" },
      { path: "bin", type: "symlink", linkpath: "usr/bin" },
    ]);
    const upper = await writeLayer(dir, [{ path: "bin/tool", content: "x" }]);
    await refused(dir, [lower, upper], [
      "'bin/tool'",
      label(upper),
      `under 'bin', which ${label(lower)} makes a symbolic link`,
    ]);
    // An upper directory entry replaces a lower symlink, as the spec says.
    const dirOverLink = await writeLayer(dir, [
      { path: "bin", type: "directory" },
      { path: "bin/tool", content: "x" },
    ]);
    const { image } = await build(dir, [lower, dirOverLink]);
    assertEquals((await listImage(image)).get("bin")?.mode, "drwxr-xr-x");
  });
});

Deno.test("corrupt and truncated layers are refused with the layer and the offset", async () => {
  await withDir(async (dir) => {
    const good = await tarOf([{ path: "a", content: "a".repeat(2000) }, {
      path: "b",
      content: "b",
    }]);
    const corrupt = good.slice();
    corrupt[512 * 5 + 10] = 0x55; // in the name of "b", whose header follows 1 + 4 blocks of "a"
    const badSum = await writeLayer(dir, corrupt);
    await refused(dir, [badSum], [label(badSum), "bad checksum", "offset 2560"]);

    const gz = await Deno.readFile((await writeLayer(dir, good, "gzip")).path);
    const cut = `${dir}/cut`;
    await Deno.writeFile(cut, gz.subarray(0, gz.length - 20));
    const truncated = { path: cut, digest: "sha256:" + "c".repeat(64), mediaType: "" };
    await refused(dir, [truncated], ["layer sha256:cccccccccccc", "gzip"]);

    const paxOnly = encodeHeader(makeHeader({ path: "p".repeat(300), type: "file" }));
    const orphan = await writeLayer(dir, paxOnly.subarray(0, paxOnly.length - 512), "none");
    await refused(dir, [orphan], [label(orphan), "truncated archive"]);

    const rawCut = await writeLayer(dir, good.subarray(0, 1200), "none");
    await refused(dir, [rawCut], [label(rawCut), "truncated archive", "'a'"]);

    const noise = crypto.getRandomValues(new Uint8Array(4096));
    noise[0] = 0x41; // neither gzip nor zstd magic
    const junk = await writeLayer(dir, noise, "none");
    await refused(dir, [junk], [label(junk), "not a tar archive"]);

    const notLayer = {
      ...(await writeLayer(dir, good)),
      mediaType: "application/vnd.oci.image.config.v1+json",
    };
    await refused(dir, [notLayer], ["unsupported layer media type"]);
  });
});

Deno.test("decompression bombs, absurd sizes, sparse files and duplicates are refused", async () => {
  await withDir(async (dir) => {
    const zeros = new Uint8Array(512 << 10);
    const bomb = await writeLayer(
      dir,
      [1, 2, 3, 4].map((n) => ({ path: `z${n}`, content: zeros })),
    );
    await refused(dir, [bomb], [label(bomb), "expands to more than 1 MiB"], 1 << 20);

    const hugeHeader = encodeHeader(makeHeader({ path: "huge", type: "file", size: 2 ** 50 }));
    const absurd = await writeLayer(dir, concat([hugeHeader, new Uint8Array(4096)]));
    await refused(dir, [absurd], [label(absurd), "'huge'", "claims 1125899906842624 bytes"]);

    const sparse = encodeHeader(makeHeader({ path: "sparse", type: "file" }));
    sparse[156] = "S".charCodeAt(0);
    setChecksum(sparse);
    const sparseLayer = await writeLayer(dir, concat([sparse, new Uint8Array(1024)]));
    await refused(dir, [sparseLayer], [label(sparseLayer), "sparse files are not supported"]);

    const dup = await writeLayer(dir, [{ path: "f", content: "1" }, { path: "f", content: "2" }]);
    await refused(dir, [dup], [label(dup), "duplicate entry"]);

    const deep = await writeLayer(dir, [{ path: "a/".repeat(3000), type: "directory" }]);
    await refused(dir, [deep], [label(deep), "path longer than 4096 bytes"]);
    const wide = await writeLayer(dir, [{ path: `d/${"n".repeat(256)}`, content: "" }]);
    await refused(dir, [wide], [label(wide), "file name longer than 255 bytes"]);
  });
});

Deno.test("a 300 MB layer streams through in bounded memory", async () => {
  await withDir(async (dir) => {
    const size = 300 * 2 ** 20;
    const path = `${dir}/big`;
    await writeZerosLayer(path, size);
    const layer = { path, digest: "sha256:" + "b".repeat(64), mediaType: "" };
    const image = `${dir}/out/image.sqfs`;
    // Measured in a process of its own: test files share this one.
    const module = fileURLToPath(new URL("../mod/image/squashfs.ts", import.meta.url));
    const script = `
      import { buildSquashfs } from ${JSON.stringify(module)};
      const rss = () => Number(Deno.readTextFileSync("/proc/self/status")
        .match(/^VmRSS:\\s+(\\d+) kB/m)[1]) * 1024;
      const before = rss();
      let peak = before;
      const timer = setInterval(() => peak = Math.max(peak, rss()), 20);
      const result = await buildSquashfs([JSON.parse(Deno.args[0])], Deno.args[1], {
        tar2sqfs: "/usr/bin/tar2sqfs", compression: "zstd", blockSizeKiB: 128, maxBytes: 2 ** 31,
      });
      clearInterval(timer);
      console.log(JSON.stringify({ grown: peak - before, bytes: result.bytes }));
    `;
    const r = await runCommand(Deno.execPath(), [
      "run",
      "-A",
      "--no-config",
      "--no-check",
      "-",
      JSON.stringify(layer),
      image,
    ], { stdin: script });
    assertEquals(r.code, 0, r.stderr);
    const { grown, bytes } = JSON.parse(r.stdout);
    assertEquals(bytes, size);
    assertEquals((await listImage(image)).get("zeros")?.size, String(size));
    // About 65 MiB here (runtime warm-up and buffers in flight); holding the layer would be 300+.
    assert(grown < 150 * 2 ** 20, `RSS grew by ${grown >> 20} MiB while streaming 300 MiB`);
  });
});

/** A gzip layer of one file of `size` zero bytes, written without holding it in memory. */
async function writeZerosLayer(path: string, size: number): Promise<void> {
  const header = encodeHeader(makeHeader({ path: "zeros", type: "file", size }));
  const zeros = new Uint8Array(1 << 20);
  async function* tar() {
    yield header;
    for (let left = size; left > 0; left -= zeros.length) yield zeros.subarray(0, left);
    yield new Uint8Array(1024);
  }
  await pipeline(Readable.from(tar()), createGzip({ level: 1 }), createWriteStream(path));
}

Deno.test("archives written by GNU tar in gnu and posix formats convert alike", async () => {
  await withDir(async (dir) => {
    const tree = `${dir}/tree`;
    const long = `${"sub-directory-".repeat(8)}/${"file-name-".repeat(12)}`;
    await Deno.mkdir(`${tree}/${long.split("/")[0]}`, { recursive: true });
    await Deno.writeTextFile(`${tree}/${long}`, "long");
    await Deno.symlink(`/${"far/".repeat(30)}away`, `${tree}/link`);
    await Deno.link(`${tree}/${long}`, `${tree}/hard`);
    for (const format of ["gnu", "posix"]) {
      const tar = `${dir}/${format}.tar`;
      const r = await runCommand("tar", [
        `--format=${format}`,
        "--owner=:3000000",
        "--group=:5",
        "--mtime=@1700000000.5",
        "-C",
        tree,
        "-cf",
        tar,
        ".",
      ]);
      assertEquals(r.code, 0, r.stderr);
      const layer = await writeLayer(dir, await Deno.readFile(tar), "none");
      const { image } = await build(dir, [layer]);
      const list = await listImage(image);
      assertEquals(await cat(image, long), "long");
      assertEquals(list.get(long)?.uid, 3000000);
      assertEquals(list.get(long)?.gid, 5);
      assertEquals(list.get("link")?.link, `/${"far/".repeat(30)}away`);
      assertEquals((await inode(image, "hard")).inode, (await inode(image, long)).inode);
      assertEquals((await inode(image, long)).mtime, 1700000000);
      await Deno.remove(image);
    }
  });
});
