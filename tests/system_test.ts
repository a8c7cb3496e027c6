/**
 * `shoal system df` and `shoal system prune`: what a repository holds beyond
 * its images, and freeing it without touching what a pull or an image uses.
 */
import { assert, assertEquals, assertMatch } from "./support/assert.ts";
import { startRegistry } from "./support/registry.ts";
import { busyboxImage, pushImage } from "./support/oci.ts";
import { runCommand, shoalScript } from "./support/shoal.ts";

async function exists(path: string): Promise<boolean> {
  return await Deno.lstat(path).then(() => true, () => false);
}

async function df(env: Record<string, string>) {
  const r = await runCommand(shoalScript, ["system", "df", "--format", "json"], { env });
  assertEquals(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

Deno.test("system df shows images, blobs, partials; prune frees unused blobs and dead partials only", async () => {
  await using reg = await startRegistry("plain");
  await pushImage(reg, "s/bb", "latest", busyboxImage());
  const dir = await Deno.makeTempDir({ prefix: "shoal-system-" });
  try {
    const env = { XDG_DATA_HOME: dir };
    const ref = `${reg.host}/s/bb`;
    const pulled = await runCommand(shoalScript, ["pull", "-q", "--tls-verify=false", ref], {
      env,
    });
    assertEquals(pulled.code, 0, pulled.stderr);
    const blobs = `${dir}/shoal/blobs/sha256`;
    const used = (await Array.fromAsync(Deno.readDir(blobs))).map((e) => e.name);
    const fresh = await df(env);
    assertEquals(
      [fresh.imageCount, fresh.blobCount, fresh.unusedBlobCount, fresh.partialCount],
      [1, used.length, 0, 0],
    );

    // What pulls leave: a blob no image uses, a partial of a pull stopped long ago, one
    // being written now (fresh), and an old one whose pull (on this node) still holds it.
    const hex = (c: string) => c.repeat(64);
    const old = new Date(Date.now() - 3600_000);
    await Deno.writeFile(`${blobs}/${hex("a")}`, new Uint8Array(1000));
    await Deno.writeFile(`${blobs}/${hex("b")}.partial`, new Uint8Array(2000));
    await Deno.utime(`${blobs}/${hex("b")}.partial`, old, old);
    await Deno.writeFile(`${blobs}/${hex("c")}.partial`, new Uint8Array(3000));
    await Deno.writeFile(`${blobs}/${hex("d")}.partial`, new Uint8Array(4000));
    await Deno.utime(`${blobs}/${hex("d")}.partial`, old, old);
    using held = await Deno.open(`${blobs}/${hex("d")}.partial`, { read: true, write: true });
    await held.lock(true);

    const usage = await df(env);
    assertEquals(usage.unusedBlobCount, 1);
    assertEquals(usage.unusedBlobs, 1000);
    assertEquals([usage.partialCount, usage.partials, usage.stalePartials], [3, 9000, 2000]);
    const table = await runCommand(shoalScript, ["system", "df"], { env });
    assertMatch(table.stdout, /^WHAT\s+COUNT\s+SIZE\s+RECLAIMABLE\n/);
    assertMatch(table.stdout, /\npartials\s+3\s+9\.00 kB\s+2\.00 kB\n/);

    // A pull in progress (its shared lock on locks/pulling): the blobs are left alone.
    const pulling = await Deno.open(`${dir}/shoal/locks/pulling`, { read: true, write: true });
    await pulling.lock(false);
    const busy = await runCommand(shoalScript, ["system", "prune"], { env });
    pulling.close();
    assertEquals(busy.code, 0, busy.stderr);
    assertMatch(busy.stderr, /cached blobs left alone: a pull is in progress/);
    assert(await exists(`${blobs}/${hex("a")}`));

    const pruned = await runCommand(shoalScript, ["system", "prune"], { env });
    assertEquals(pruned.code, 0, pruned.stderr);
    assertEquals(pruned.stdout, `Freed 3.00 kB in ${dir}/shoal\n`);
    assertEquals(
      await Promise.all([hex("a"), `${hex("b")}.partial`].map((n) => exists(`${blobs}/${n}`))),
      [false, false],
    );
    // Kept: the image's blobs, the partial being written, the one whose pull holds it.
    for (const n of [...used, `${hex("c")}.partial`, `${hex("d")}.partial`]) {
      assert(await exists(`${blobs}/${n}`), n);
    }
    const images = await runCommand(shoalScript, ["images", "--format", "json"], { env });
    assertEquals(JSON.parse(images.stdout).length, 1);

    const bad = await runCommand(shoalScript, ["system", "clean"], { env });
    assertEquals(bad.code, 2);
    assertMatch(bad.stderr, /^shoal: error: system takes df or prune, not 'clean'/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
