/**
 * A layer that is at once a valid tar stream and a valid squashfs image: an
 * image author can publish one, the admin's pull into the centralized
 * repository accepts it (it is a tar), and the registry client keeps the blob
 * in CENTRAL/blobs/sha256/<hex>, root-owned. Were the helper to mount any
 * root-owned file of the repository, every local user could feed those
 * author-crafted bytes to the kernel's squashfs parser; it must take only
 * REPO/images/<alg>-<hex>.sqsh.
 */
import { assert, assertEquals, assertMatch } from "./support/assert.ts";
import { hostMountsOf, loopDevicesOf, makeBundle } from "./support/helper.ts";
import { hostPlatform, makeImage, makeLayer, pushImage, sha256 } from "./support/oci.ts";
import { runSite, testImages } from "./support/run.ts";
import { runCommand } from "./support/shoal.ts";
import { runAs } from "./support/users.ts";

async function must(cmd: string, args: string[]): Promise<string> {
  const r = await runCommand(cmd, args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(" ")}: ${r.stderr.trim()}`);
  return r.stdout;
}

/** An uncompressed squashfs whose first 1536 bytes are also a one-entry tar archive. */
async function polyglot(work: string): Promise<Uint8Array> {
  await Deno.mkdir(`${work}/src`);
  // 1440 bytes: the first tar block less the superblock, then the two end-of-archive blocks.
  await Deno.writeFile(`${work}/src/f`, new Uint8Array(1440).fill(0x41));
  const img = `${work}/img`;
  await must("mksquashfs", [
    `${work}/src`,
    img,
    ...["-noappend", "-no-fragments", "-noI", "-noD", "-noF", "-noX", "-no-xattrs", "-quiet"],
  ]);
  const bytes = await Deno.readFile(img);
  // Uncompressed data blocks follow the 96-byte superblock: the file's bytes are ours to shape.
  assertEquals(bytes.subarray(96, 96 + 1440), new Uint8Array(1440).fill(0x41), "data offset");
  const superblock = bytes.slice(0, 96);

  const text = new TextEncoder();
  bytes.fill(0, 96, 512 + 1024);
  const block = bytes.subarray(0, 512);
  const put = (offset: number, s: string) => block.set(text.encode(s), offset);
  put(100, "0000644\0");
  put(108, "0000000\0");
  put(116, "0000000\0");
  put(124, "00000000000\0");
  put(136, "00000000000\0");
  put(156, "0");
  put(257, "ustar\0");
  put(263, "00");
  // The checksum is taken with its own field read as spaces.
  put(148, "        ");
  const sum = block.reduce((a, b) => a + b, 0);
  put(148, `${sum.toString(8).padStart(6, "0")}\0 `);

  assertEquals(bytes.subarray(0, 96), superblock, "the superblock is untouched");
  await Deno.writeFile(img, bytes);
  const listed = await must("tar", ["-tvf", img]);
  assertEquals(listed.trim().split("\n").length, 1, `one tar entry: ${listed}`);
  assertMatch(await must("unsquashfs", ["-s", img]), /Found a valid SQUASHFS 4:0 superblock/);
  assertMatch(await must("unsquashfs", ["-l", img]), /squashfs-root\/f\n/);
  // What the finding is about: the kernel itself takes it.
  await Deno.mkdir(`${work}/mnt`);
  await must("mount", ["-t", "squashfs", "-o", "loop,ro", img, `${work}/mnt`]);
  try {
    assertEquals((await Deno.readFile(`${work}/mnt/f`)).subarray(0, 4), bytes.subarray(96, 100));
  } finally {
    await must("umount", ["-d", `${work}/mnt`]);
  }
  return bytes;
}

Deno.test("a tar+squashfs polyglot layer pulled by root: its cached blob is refused to users", async () => {
  const site = await runSite(true);
  const user = (await site.user("user"))!;
  const work = await Deno.makeTempDir({ prefix: "shoal-polyglot-" });
  try {
    const layer = makeLayer(await polyglot(work), { compression: "none" });
    const { registry } = await testImages();
    const image = makeImage([layer], { platform: hostPlatform(), cmd: ["true"] });
    await pushImage(registry, "shoal/polyglot", "1", image);
    const reference = `${registry.host}/shoal/polyglot:1`;

    const pulled = await site.shoal("root", ["pull", "-q", "--centralized-repository", reference]);
    assertEquals(pulled.code, 0, `root's pull: ${pulled.stderr}`);
    const hex = layer.digest.slice("sha256:".length);
    assertEquals(hex, sha256(layer.data).slice("sha256:".length));
    const blob = `${site.central}/blobs/sha256/${hex}`;
    const st = await Deno.stat(blob);
    assertEquals([st.isFile, st.uid], [true, 0]);
    const cached = await Deno.readFile(blob);
    assertEquals(new TextDecoder().decode(cached.subarray(0, 4)), "hsqs");
    assertEquals(cached, layer.data);

    const listed = await site.shoal("user", [
      "images",
      "--format",
      "json",
      "--centralized-repository",
    ]);
    assertEquals(listed.code, 0, listed.stderr);
    const refs = (JSON.parse(listed.stdout) as { reference: string }[]).map((i) => i.reference);
    assert(refs.includes(reference), `listed: ${refs.join(", ")}`);

    // A run dir of the user's, as the helper wants one for the bundle.
    const runDir = `${site.dir}/run-${user.name}`;
    await Deno.mkdir(runDir, { mode: 0o700 });
    await Deno.chown(runDir, user.uid, user.gid);
    const bundle = `${runDir}/b`;
    await makeBundle(user, bundle, { args: ["true"], root: true });
    const helper = `${site.dir}/prefix/libexec/shoal/shoal-mount`;
    const runc = ["--root", `${runDir}/state`, "run", "--bundle", bundle, "polyglot"];
    for (const root of [true, false]) {
      const r = await runAs(user, helper, [
        ...["run", "--image", blob, "--bundle", bundle],
        ...(root ? ["--root"] : []),
        ...["--", ...runc],
      ]);
      assertEquals(r.code, 1, `exit status (stderr: ${r.stderr})`);
      assertEquals(r.stdout, "");
      const lines = r.stderr.trimEnd().split("\n");
      assertEquals(lines.length, 1, `one line: ${r.stderr}`);
      assertMatch(lines[0]!, /^shoal-mount: error: .+ \(.+\)$/);
      assertMatch(lines[0]!, /is not an image file of the image repositories/);
      assertEquals(await hostMountsOf(bundle), []);
      assertEquals(await hostMountsOf(blob), []);
      assertEquals(await loopDevicesOf(blob), "");
      const all = await must("losetup", ["-a"]);
      assert(!all.includes(hex), `losetup -a: ${all}`);
    }
    assertEquals((await Deno.stat(blob)).mtime, st.mtime);
  } finally {
    await Deno.remove(work, { recursive: true });
  }
});
