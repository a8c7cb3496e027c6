/**
 * `shoal run --mpi` as an unprivileged user, on both run paths, with real
 * MPICH images (tests/support/mpi_images.ts): the host's MPICH 4 replaces the
 * bookworm image's and hello runs on it; an MPICH 3 (bullseye's, unpacked as
 * a second host MPI type) replaces it too, and is refused for a program that
 * calls an MPI-4 function; the host's MPICH 4 is refused for the bullseye
 * image (glibc), an image without MPI, a library of another ABI and a plugin
 * whose dependency the node lacks are refused; refusals leave nothing behind.
 */
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./support/assert.ts";
import { type RunSite, runSite, testImages } from "./support/run.ts";
import { mpiImage, mpiImageLayer, mpiSite } from "./support/mpi_images.ts";
import { makeImage, makeLayer, pushImage } from "./support/oci.ts";
import { runCommand } from "./support/shoal.ts";
import { libcmp, parseLdCache, serializeLdCache, withEntries } from "../mod/sys/ldcache.ts";
import { openRunBase } from "../mod/runtime/rundir.ts";
import type { HpcReport } from "../mod/doctor/hpc.ts";

let ldPathPushed: Promise<string> | undefined;

/**
 * The MPICH 4 image plus a layer with a copy of its libmpich (debug info
 * stripped) in /opt/mpich/lib and `ENV LD_LIBRARY_PATH=/opt/mpich/lib`, as
 * Dockerfiles that build their own MPI do: the loader finds it before
 * /etc/ld.so.cache. Pushed once per process, pulled by the test user.
 */
async function ldPathImage(site: RunSite): Promise<string> {
  ldPathPushed ??= (async () => {
    const dir = await Deno.makeTempDir();
    try {
      const base = await mpiImage("mpich4");
      const lib = "usr/lib/x86_64-linux-gnu/libmpich.so.12.2.2";
      const untar = await runCommand("tar", [
        "-xzf",
        (await mpiImageLayer("mpich4")).path,
        "-C",
        dir,
        lib,
      ]);
      assertEquals(untar.code, 0, untar.stderr);
      const strip = await runCommand("strip", ["--strip-debug", `${dir}/${lib}`]);
      assertEquals(strip.code, 0, strip.stderr);
      const layer = makeLayer([
        { type: "dir", path: "opt/mpich" },
        { type: "dir", path: "opt/mpich/lib" },
        {
          type: "file",
          path: "opt/mpich/lib/libmpich.so.12",
          content: await Deno.readFile(`${dir}/${lib}`),
        },
      ]);
      const image = makeImage([...base.layers, layer], {
        env: ["PATH=/usr/local/bin:/usr/bin:/bin", "LD_LIBRARY_PATH=/opt/mpich/lib"],
        cmd: ["hello"],
      });
      const { registry } = await testImages();
      await pushImage(registry, "shoal/mpich4-ldpath", "1", image);
      return `${registry.host}/shoal/mpich4-ldpath:1`;
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  })();
  const reference = await ldPathPushed;
  const pull = await site.shoal("user", ["pull", "-q", reference]);
  assertEquals(pull.code, 0, pull.stderr);
  return reference;
}

/** Whether the run named `name` left its directory (other tests' runs may be there). */
function bundleLeft(uid: number, name: string): boolean {
  const base = openRunBase({ uid }, false)?.path ?? `/tmp/shoal-${uid}`;
  try {
    Deno.lstatSync(`${base}/${name}`);
    return true;
  } catch {
    return false;
  }
}

for (const helper of [true, false]) {
  const tag = helper ? "path A (helper)" : "path B (squashfuse)";
  Deno.test(`${tag}: shoal run --mpi, as a user`, async (t) => {
    const site = await runSite(helper);
    const user = (await site.user("user"))!;
    const images = await mpiSite(site);
    const run = (args: string[]) => site.shoal("user", ["run", ...args]);

    await t.step("without --mpi, hello runs on the image's own MPICH", async () => {
      const r = await run([images.mpich4!]);
      assertEquals(r.code, 0, r.stderr);
      assertEquals(
        r.stdout,
        "hello rank 0 of 1; MPICH Version:\t4.0.2; /lib/x86_64-linux-gnu/libmpich.so.12\n",
      );
    });

    await t.step("--mpi: the host's MPICH 4 and its closure replace the image's", async () => {
      const r = await run(["--mpi", images.mpich4!]);
      assertEquals(r.code, 0, r.stderr);
      assertEquals(
        r.stdout,
        "hello rank 0 of 1; MPICH Version:\t4.0.2; /opt/shoal/mpi/lib/libmpich.so.12\n",
      );
      // UCX's dependencies and its plugins' come from the host too.
      const ls = await run([
        "--mpi",
        images.mpich4!,
        "sh",
        "-c",
        "ls /opt/shoal/mpi/lib /opt/shoal/mpi/lib/ucx",
      ]);
      assertEquals(ls.code, 0, ls.stderr);
      for (const name of ["libucp.so.0", "libhwloc.so.15", "libibverbs.so.1", "libuct_cma.so.0"]) {
        assertStringIncludes(ls.stdout, name);
      }
      assertEquals(ls.stdout.includes("libc.so.6"), false, ls.stdout);
    });

    await t.step(
      "--mpi-type mpich3: an older MPICH of the same ABI runs hello, with a warning",
      async () => {
        const r = await run(["--mpi-type", "mpich3", images.mpich4!]);
        assertEquals(r.code, 0, r.stderr);
        assertEquals(
          r.stdout,
          "hello rank 0 of 1; MPICH Version:\t3.4.1; /opt/shoal/mpi/lib/libmpich.so.12\n",
        );
        assertMatch(r.stderr, /older than the image's .*libmpich\.so\.12\.2\.2/);
      },
    );

    await t.step(
      "an image whose LD_LIBRARY_PATH holds its own MPICH gets the host's there too",
      async () => {
        const r = await run(["--mpi-type", "mpich3", await ldPathImage(site)]);
        assertEquals(r.code, 0, r.stderr);
        assertEquals(
          r.stdout,
          "hello rank 0 of 1; MPICH Version:\t3.4.1; /opt/mpich/lib/libmpich.so.12\n",
        );
      },
    );

    await t.step("refusals: one line naming the library and the fix, nothing left", async (t) => {
      const cases: [string, string[], RegExp][] = [
        [
          "glibc: the host's MPICH 4 into a bullseye image",
          ["--mpi", images.mpich3!],
          /^shoal: error: --mpi: the host's \/\S+ needs GLIBC_2\.34, the image's glibc has only up to GLIBC_2\.30 \(use an image with glibc 2\.34 or newer/,
        ],
        [
          "symbols: an MPI-4 program on MPICH 3",
          ["--mpi-type", "mpich3", images.mpich4!, "mpi4"],
          /--mpi: \/usr\/local\/bin\/mpi4 calls MPI_Info_create_env, which the host's \S+libmpich\.so\.12\.1\.10 does not have/,
        ],
        [
          "an image without MPI",
          ["--mpi", await site.image("user"), "true"],
          /--mpi: the image has no MPI library/,
        ],
        [
          "SONAME: Open MPI's ABI for an MPICH image",
          ["--mpi-type", "openmpi", images.mpich4!],
          /--mpi: the image's MPI is libmpich\.so\.12 but the host's \S+ is libmpi\.so\.40: different ABIs/,
        ],
        [
          "a plugin whose dependency the node lacks",
          ["--mpi-type", "broken", images.mpich4!],
          /--mpi: libshoalgone\.so\.1, needed by the plugin \S+libuct_fake\.so\.0, is not on this node/,
        ],
        [
          "the site's library is not on this node",
          ["--mpi-type", "gone", images.mpich4!],
          /^shoal: error: --mpi: \S+\/gone\/libmpich\.so\.12 \(the site's MPI library\): does not exist on this node \(ask your admin/,
        ],
        [
          "an MPI type the site does not have",
          ["--mpi-type", "nope", images.mpich4!],
          /--mpi-type nope: no such MPI type \(this site has: mpich4, mpich3, openmpi, broken, gone\)/,
        ],
      ];
      for (const [i, [name, args, error]] of cases.entries()) {
        await t.step(name, async () => {
          const runName = `mpi-refused-${i}-${Date.now()}`;
          const r = await run(["--name", runName, ...args]);
          assert(r.code !== 0, r.stdout);
          assertEquals(r.stdout, "");
          assertMatch(r.stderr, error);
          assertEquals(r.stderr.trim().split("\n").length <= 2, true, r.stderr);
          assertEquals(bundleLeft(user.uid, runName), false);
        });
      }
    });
  });
}

Deno.test("shoal doctor: the HPC section lists the site's host MPI types and the Slurm step", async () => {
  const site = await runSite(false);
  await mpiSite(site);
  const env = { SLURM_JOB_ID: "7", SLURM_STEP_ID: "2", SLURMD_NODENAME: "n1", SLURM_LOCALID: "1" };
  const json = await site.shoal("user", ["doctor", "--format", "json"], {
    env: { ...env, PMIX_RANK: "1", PMIX_SERVER_TMPDIR: "/var/spool/pmix.7.2" },
  });
  const { hpc } = JSON.parse(json.stdout) as { hpc: HpcReport };
  assertEquals(hpc.slurm, { jobId: "7", stepId: "2", node: "n1", localRank: "1" });
  assertEquals(hpc.pmi, {
    flavour: "pmix",
    detail: "PMIX_RANK=1, PMIX_SERVER_TMPDIR=/var/spool/pmix.7.2",
  });
  const types = Object.fromEntries(hpc.mpi.map((m) => [m.name, m]));
  assertEquals(hpc.mpi.map((m) => [m.name, m.default]), [
    ["mpich4", true],
    ["mpich3", false],
    ["openmpi", false],
    ["broken", false],
    ["gone", false],
  ]);
  assertEquals([types.mpich4!.soname, types.mpich4!.glibcNeeded], ["libmpich.so.12", "2.34"]);
  assertEquals(types.mpich4!.problem, null);
  assertEquals([types.mpich3!.soname, types.mpich3!.problem], ["libmpich.so.12", null]);
  // Built on glibc 2.31, whose newest symbol version is GLIBC_2.30.
  assertMatch(types.mpich3!.glibcNeeded!, /^2\.([0-9]|[12][0-9]|30)$/);
  assertEquals(types.openmpi!.soname, "libmpi.so.40");
  assertMatch(types.broken!.problem!, /^--mpi: libshoalgone\.so\.1, needed by the plugin /);
  assertMatch(
    types.gone!.problem!,
    /gone\/libmpich\.so\.12 \(the site's MPI library\): does not exist/,
  );
  assertEquals([hpc.ranksShareContainer, hpc.ranksDetail], [
    false,
    "this step has one rank on this node",
  ]);
  const step = {
    ...env,
    SLURM_STEP_TASKS_PER_NODE: "2",
    SLURM_NODEID: "0",
    SLURM_SRUN_COMM_PORT: "4",
  };
  const shared = await site.shoal("user", ["doctor", "--format", "json"], { env: step });
  const ranks = (JSON.parse(shared.stdout) as { hpc: HpcReport }).hpc;
  assertEquals([ranks.ranksShareContainer, ranks.ranksDetail], [
    true,
    "the 2 ranks of this slurm step on this node share one",
  ]);

  const text = await site.shoal("user", ["doctor"], {
    env: { ...env, PMI_FD: "3", PMI_RANK: "1" },
  });
  assertStringIncludes(text.stdout, "\nHPC:\n  Slurm: job 7, step 2, node n1, local rank 1\n");
  assertStringIncludes(text.stdout, "  Launcher interface: pmi (PMI_FD=3, PMI_RANK=1)\n");
  assertMatch(
    text.stdout,
    /\nmpich4 \(default\) +\/usr\/lib\/x86_64-linux-gnu\/libmpich\.so\.12 +libmpich\.so\.12 +>= 2\.34 +ok, \d+ files injected\n/,
  );
});

Deno.test("ld.so.cache: an image's is read, and the rewritten one reads back in glibc's ldconfig in its order", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const layer = await mpiImageLayer("mpich3");
    const untar = await runCommand("tar", ["-xzf", layer.path, "-C", dir, "etc/ld.so.cache"]);
    assertEquals(untar.code, 0, untar.stderr);
    const original = await Deno.readFile(`${dir}/etc/ld.so.cache`);
    const cache = parseLdCache(original, "bullseye");
    const mpich = cache.entries.find((e) => e.soname === "libmpich.so.12");
    assertEquals(mpich?.path, "/lib/x86_64-linux-gnu/libmpich.so.12");
    const injected = { soname: "libucp.so.0", path: "/opt/shoal/mpi/lib/libucp.so.0" };
    const rewritten = withEntries(cache, [
      { ...injected, flags: mpich!.flags, hwcap: 0n },
      {
        soname: "libmpich.so.12",
        path: "/opt/shoal/mpi/lib/libmpich.so.12",
        flags: mpich!.flags,
        hwcap: 0n,
      },
    ]);
    await Deno.writeFile(`${dir}/new.cache`, serializeLdCache(rewritten));
    const listing = async (file: string) => {
      const r = await runCommand("ldconfig", ["-C", file, "-p"]);
      assertEquals(r.code, 0, r.stderr);
      return r.stdout.split("\n").filter((l) => l.startsWith("\t"));
    };
    const before = await listing(`${dir}/etc/ld.so.cache`);
    const after = await listing(`${dir}/new.cache`);
    const expected = [
      ...before.map((l) =>
        l.replace("=> /lib/x86_64-linux-gnu/libmpich.so.12", "=> /opt/shoal/mpi/lib/libmpich.so.12")
      ),
      `\t${injected.soname} (libc6,x86-64) => ${injected.path}`,
    ];
    // ldconfig lists in the cache's order, which the linker's binary search needs.
    assertEquals(after, expected.sort((a, b) => libcmp(name(b), name(a))));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ld.so.cache: glibc's compat format (old table, then the new one; glibc < 2.32) is read", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/compat.cache`;
    // -X: the host's library links stay as they are.
    const made = await runCommand("ldconfig", ["-X", "-c", "compat", "-C", file]);
    assertEquals(made.code, 0, made.stderr);
    const bytes = await Deno.readFile(file);
    assertEquals(new TextDecoder().decode(bytes.subarray(0, 11)), "ld.so-1.7.0");
    const listed = await runCommand("ldconfig", ["-C", file, "-p"]);
    const expected = listed.stdout.split("\n").filter((l) => l.startsWith("\t"))
      .map((l) => `${name(l)} ${l.split(" => ")[1]}`);
    const entries = parseLdCache(bytes, file).entries.map((e) => `${e.soname} ${e.path}`);
    assert(entries.length > 10, `${entries.length} entries`);
    assertEquals(entries, expected);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

const name = (line: string) => line.trim().split(" ")[0]!;
