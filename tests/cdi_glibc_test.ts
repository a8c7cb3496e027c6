/**
 * Driver libraries need the image's glibc to be new enough: `shoal cdi
 * generate` records the newest GLIBC_x.y the spec's files need, pulls keep
 * each image's glibc version, and a run whose image is older is refused in
 * one line naming the library, before anything is made. Fake libcs (shared
 * objects defining GLIBC_2.2.5 up to a version, built here) in busybox
 * images stand for old and new distributions; the fake driver's libcuda
 * calls dlopen, which this host's glibc versions GLIBC_2.34.
 */
import { assertEquals, assertMatch } from "./support/assert.ts";
import { runSite, testImages } from "./support/run.ts";
import { busyboxImage, pushImage } from "./support/oci.ts";
import { fakeNvidiaNode, LIBDIR } from "./support/fake_gpus.ts";
import { runCommand } from "./support/shoal.ts";
import type { CdiSpec } from "../mod/cdi/spec.ts";

const VERSION = "560.35.03";

/** A libc.so.6 whose version definitions run from GLIBC_2.2.5 to GLIBC_`newest`. */
async function fakeLibc(newest: string): Promise<Uint8Array> {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(
      `${dir}/libc.c`,
      "int shoal_old(void) { return 1; }\nint shoal_new(void) { return 2; }\n",
    );
    await Deno.writeTextFile(
      `${dir}/libc.map`,
      `GLIBC_2.2.5 { global: shoal_old; local: *; };\nGLIBC_${newest} { global: shoal_new; } GLIBC_2.2.5;\n`,
    );
    const r = await runCommand("gcc", [
      "-shared",
      "-fPIC",
      "-nostdlib",
      "-Wl,-soname,libc.so.6",
      `-Wl,--version-script=${dir}/libc.map`,
      "-o",
      `${dir}/libc.so.6`,
      `${dir}/libc.c`,
    ]);
    assertEquals(r.code, 0, r.stderr);
    return await Deno.readFile(`${dir}/libc.so.6`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("a driver library that needs a newer glibc than the image's is refused, as a user", async () => {
  const s = await runSite(true);
  const { registry } = await testImages();
  const root = `${s.dir}/node`;
  await Deno.mkdir(root, { mode: 0o755 });
  await fakeNvidiaNode(root, VERSION, undefined, true);
  await s.writeConfig({ cdiSpecDirs: [`${s.dir}/cdi`] });
  const gen = await s.shoal("root", ["cdi", "generate", "--root", root]);
  assertEquals(gen.code, 0, gen.stderr);
  const spec = JSON.parse(await Deno.readTextFile(`${s.dir}/cdi/nvidia.json`)) as CdiSpec;
  assertEquals(spec.annotations, {
    "shoal.dev/glibc": "2.34",
    "shoal.dev/glibc-library": `${LIBDIR}/libcuda.so.1`,
  });

  const images: Record<string, string> = {};
  for (const [name, newest] of [["old", "2.17"], ["new", "2.36"]]) {
    const image = busyboxImage({
      extraEntries: [{
        type: "file",
        path: "lib/x86_64-linux-gnu/libc.so.6",
        content: await fakeLibc(newest!),
      }],
    });
    await pushImage(registry, `glibc/${name}`, "1", image);
    images[name!] = `${registry.host}/glibc/${name}:1`;
    assertEquals((await s.shoal("user", ["pull", "-q", images[name!]!])).code, 0);
  }
  const listed = JSON.parse((await s.shoal("user", ["images", "--format", "json"])).stdout) as {
    reference: string;
    glibc?: string;
  }[];
  assertEquals(listed.find((i) => i.reference === images.old)?.glibc, "2.17");
  assertEquals(listed.find((i) => i.reference === images.new)?.glibc, "2.36");

  for (const ask of [["--device", "nvidia.com/gpu=0"], ["--gpus", "all"]]) {
    const old = await s.shoal("user", ["run", ...ask, images.old!, "true"]);
    assertEquals(old.code, 1, old.stdout);
    assertEquals(old.stderr.trim().split("\n").length, 1, old.stderr);
    assertMatch(
      old.stderr,
      new RegExp(
        `the host's ${LIBDIR}/libcuda.so.1 needs GLIBC_2.34, and the image .*glibc/old:1 has only up to GLIBC_2.17 \\(use an image with glibc 2.34 or newer`,
      ),
    );
    const fine = await s.shoal("user", [
      "run",
      ...ask,
      images.new!,
      "ls",
      `${LIBDIR}/libcuda.so.1`,
    ]);
    assertEquals([fine.code, fine.stdout], [0, `${LIBDIR}/libcuda.so.1\n`], fine.stderr);
  }
  // No libc at all (a static image): nothing to compare, the run goes on.
  const busybox = await s.image("user");
  const none = await s.shoal("user", ["run", "--gpus", "all", busybox, "true"]);
  assertEquals(none.code, 0, none.stderr);
});
