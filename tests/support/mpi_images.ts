/**
 * The MPI test images: Debian bookworm with MPICH 4.0.2 (ch4:ucx) and Debian
 * bullseye with MPICH 3.4.1 (ch3), each a debootstrap minbase with the MPI
 * runtime and three programs built against that image's own MPI in
 * /usr/local/bin, compiled in the build tree with its own libmpich-dev (then
 * purged, so the image carries only the runtime): `hello` (rank, size, the MPI library's version and the file
 * it was loaded from), `pingpong` (8 B latency, 1 MB and 4 MB bandwidth
 * between ranks 0 and 1) and, in bookworm only, `mpi4` (calls the MPI-4
 * MPI_Info_create_env, which MPICH 3 lacks).
 *
 * Built once per machine as root, like debian.ts's image (lock file, build
 * dir removed whatever happens, files appear by atomic rename only), and kept
 * in DEBIAN_CACHE_DIR.
 */
import {
  DEBIAN_CACHE_DIR,
  type DebianLayer,
  hostDebianMirrors,
  packTree,
  removeTree,
  run,
  writeAtomically,
} from "./debian.ts";
import { hostPlatform, type Image, makeImage, MEDIA_TYPES, pushImage } from "./oci.ts";
import type { TestRegistry } from "./registry.ts";
import { runCommand } from "./shoal.ts";
import { type RunSite, testImages } from "./run.ts";

/** Part of the file names: bump it when a recipe below changes. */
const RECIPE = 1;

export type MpiFlavour = "mpich4" | "mpich3";

interface Recipe {
  suite: string;
  programs: string[];
}

const RECIPES: Record<MpiFlavour, Recipe> = {
  mpich4: { suite: "bookworm", programs: ["hello", "pingpong", "mpi4"] },
  mpich3: { suite: "bullseye", programs: ["hello", "pingpong"] },
};
/** The build tree's compiler, removed (with what only it needed) before packing. */
const BUILD_PACKAGES = ["libmpich-dev", "gcc", "libc6-dev"];

const HELLO = `#define _GNU_SOURCE
#include <dlfcn.h>
#include <mpi.h>
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv) {
  int rank, size, len;
  char version[MPI_MAX_LIBRARY_VERSION_STRING];
  Dl_info info = {0};
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  MPI_Get_library_version(version, &len);
  version[strcspn(version, "\\n")] = 0;
  dladdr((void *)MPI_Init, &info);
  printf("hello rank %d of %d; %s; %s\\n", rank, size, version, info.dli_fname);
  MPI_Finalize();
  return 0;
}
`;

/** Medians of 9 timed rounds per size, after a warm-up round. */
const PINGPONG = `#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}
int main(int argc, char **argv) {
  int rank, sizes[] = {8, 1 << 20, 4 << 20}, iters[] = {2000, 100, 50};
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  char *buf = calloc(1, 4 << 20);
  for (int s = 0; s < 3; s++) {
    double t[10];
    for (int round = 0; round < 10; round++) {
      MPI_Barrier(MPI_COMM_WORLD);
      double start = MPI_Wtime();
      for (int i = 0; i < iters[s]; i++) {
        if (rank == 0) {
          MPI_Send(buf, sizes[s], MPI_CHAR, 1, 0, MPI_COMM_WORLD);
          MPI_Recv(buf, sizes[s], MPI_CHAR, 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        } else if (rank == 1) {
          MPI_Recv(buf, sizes[s], MPI_CHAR, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
          MPI_Send(buf, sizes[s], MPI_CHAR, 0, 0, MPI_COMM_WORLD);
        }
      }
      t[round] = (MPI_Wtime() - start) / iters[s] / 2;
    }
    qsort(t + 1, 9, sizeof t[0], cmp);
    if (rank == 0 && s == 0) printf("latency 8 B: %.2f us\\n", t[5] * 1e6);
    if (rank == 0 && s > 0) printf("bandwidth %d B: %.2f GB/s\\n", sizes[s], sizes[s] / t[5] / 1e9);
  }
  free(buf);
  MPI_Finalize();
  return 0;
}
`;

const MPI4 = `#include <mpi.h>
#include <stdio.h>
int main(int argc, char **argv) {
  MPI_Info info;
  MPI_Init(&argc, &argv);
  MPI_Info_create_env(argc, argv, &info);
  MPI_Info_free(&info);
  printf("MPI_Info_create_env ok\\n");
  MPI_Finalize();
  return 0;
}
`;

const SOURCES: Record<string, string> = { hello: HELLO, pingpong: PINGPONG, mpi4: MPI4 };

function cachePaths(flavour: MpiFlavour) {
  const { suite } = RECIPES[flavour];
  const base = `${DEBIAN_CACHE_DIR}/${flavour}-${suite}-${hostPlatform().architecture}-r${RECIPE}`;
  return { layer: `${base}.tar.gz`, record: `${base}.tar.gz.json` };
}

async function cached(flavour: MpiFlavour): Promise<DebianLayer | undefined> {
  const paths = cachePaths(flavour);
  try {
    const record = JSON.parse(await Deno.readTextFile(paths.record)) as DebianLayer;
    if ((await Deno.stat(paths.layer)).size === record.size) {
      return { ...record, path: paths.layer };
    }
  } catch { /* absent or unreadable: build */ }
  return undefined;
}

/**
 * Compiles the recipe's programs into /usr/local/bin with the tree's own
 * mpicc (apt-get inside the tree: debootstrap's --include fails to configure
 * libmpich-dev's dependencies).
 */
async function compile(root: string, recipe: Recipe): Promise<void> {
  await run("chroot", [
    root,
    "apt-get",
    "install",
    "-y",
    "--no-install-recommends",
    ...BUILD_PACKAGES,
  ]);
  for (const name of recipe.programs) {
    await Deno.writeTextFile(`${root}/tmp/${name}.c`, SOURCES[name]!);
    await run("chroot", [
      root,
      "mpicc",
      "-O2",
      "-o",
      `/usr/local/bin/${name}`,
      `/tmp/${name}.c`,
      "-ldl",
    ]);
    await Deno.remove(`${root}/tmp/${name}.c`);
  }
  await run("chroot", [root, "apt-mark", "manual", "libmpich12"]);
  await run("chroot", [root, "apt-get", "purge", "-y", "--autoremove", ...BUILD_PACKAGES]);
}

/** Trims what debootstrap and apt leave that an image does not carry. */
async function trim(root: string): Promise<void> {
  for (const dir of ["var/cache/apt/archives", "var/lib/apt/lists"]) {
    await run("find", [
      `${root}/${dir}`,
      "-mindepth",
      "1",
      "-maxdepth",
      "1",
      "-type",
      "f",
      "-delete",
    ]);
  }
  await run("find", [`${root}/dev`, "-mindepth", "1", "-delete"]);
  for (
    const file of [
      "var/log/bootstrap.log",
      "var/cache/apt/pkgcache.bin",
      "var/cache/apt/srcpkgcache.bin",
    ]
  ) {
    await Deno.remove(`${root}/${file}`).catch(() => {});
  }
  await Deno.writeTextFile(`${root}/etc/resolv.conf`, "");
  await Deno.writeTextFile(`${root}/etc/hostname`, "");
}

async function build(flavour: MpiFlavour, work: string): Promise<DebianLayer> {
  const recipe = RECIPES[flavour];
  const root = `${work}/root`;
  await run(
    "setpriv",
    [
      "--pdeathsig",
      "KILL",
      "--",
      "debootstrap",
      "--variant=minbase",
      "--include=libmpich12",
      recipe.suite,
      root,
      hostDebianMirrors().debian,
    ],
    `${work}/debootstrap.log`,
  );
  await compile(root, recipe);
  await trim(root);
  const out = `${work}/layer`;
  const packed = await packTree(root, out);
  await Deno.rename(out, cachePaths(flavour).layer);
  return { path: cachePaths(flavour).layer, ...packed };
}

async function buildLocked(flavour: MpiFlavour): Promise<DebianLayer> {
  if (Deno.uid() !== 0) {
    throw new Error(
      `no cached ${flavour} test image in ${DEBIAN_CACHE_DIR}, and building it needs root`,
    );
  }
  await Deno.mkdir(DEBIAN_CACHE_DIR, { recursive: true, mode: 0o755 });
  using lock = await Deno.open(`${DEBIAN_CACHE_DIR}/${flavour}.lock`, {
    create: true,
    write: true,
  });
  await lock.lock(true);
  const done = await cached(flavour);
  if (done) return done;
  const prefix = `build-${flavour}-`;
  for await (const entry of Deno.readDir(DEBIAN_CACHE_DIR)) {
    if (entry.name.startsWith(prefix)) await removeTree(`${DEBIAN_CACHE_DIR}/${entry.name}`);
  }
  const work = await Deno.makeTempDir({ dir: DEBIAN_CACHE_DIR, prefix });
  const started = performance.now();
  try {
    const layer = await build(flavour, work);
    await writeAtomically(cachePaths(flavour).record, JSON.stringify(layer, null, 2) + "\n");
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    console.error(
      `${flavour} test image: built ${layer.path} (${
        (layer.size / 1e6).toFixed(1)
      } MB) in ${seconds} s`,
    );
    return layer;
  } finally {
    await removeTree(work);
  }
}

/** The flavour's layer, built on the first call on this machine. */
export async function mpiImageLayer(flavour: MpiFlavour): Promise<DebianLayer> {
  return await cached(flavour) ?? await buildLocked(flavour);
}

/** The flavour's one-layer image; its command is `hello`. */
export async function mpiImage(flavour: MpiFlavour): Promise<Image> {
  const layer = await mpiImageLayer(flavour);
  return makeImage([{
    mediaType: MEDIA_TYPES.oci.layer.gzip!,
    digest: layer.digest,
    diffId: layer.diffId,
    size: layer.size,
    data: await Deno.readFile(layer.path),
  }], {
    env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
    cmd: ["hello"],
  });
}

/** Pushes the flavour's image as `shoal/FLAVOUR:1`; returns its reference. */
export async function pushMpiImage(registry: TestRegistry, flavour: MpiFlavour): Promise<string> {
  await pushImage(registry, `shoal/${flavour}`, "1", await mpiImage(flavour));
  return `${registry.host}/shoal/${flavour}:1`;
}

export const LIBDIR = "/usr/lib/x86_64-linux-gnu";

async function sh(script: string): Promise<void> {
  const r = await runCommand("sh", ["-ec", script]);
  if (r.code !== 0) throw new Error(`${script}: ${r.stderr}`);
}

/**
 * Host MPI types (the site config's `mpi`) under `dir` (root-owned): the node's MPICH 4 with UCX's
 * plugins; bullseye's MPICH 3.4.1 unpacked from its test image; a library
 * with Open MPI's SONAME; the node's MPICH with a plugin that needs a
 * library the node does not have; a library that is not there.
 */
async function mpiTypes(dir: string): Promise<Record<string, unknown>> {
  const mpich3 = await mpiImageLayer("mpich3");
  await sh(`
    mkdir -p ${dir}/mpich3 ${dir}/openmpi ${dir}/plugins ${dir}/gone
    tar -xzf ${mpich3.path} -C ${dir}/mpich3 usr/lib/x86_64-linux-gnu
    echo 'int ompi_x(void) { return 1; }' > ${dir}/openmpi/x.c
    gcc -shared -fPIC -Wl,-soname,libmpi.so.40 -o ${dir}/openmpi/libmpi.so.40 ${dir}/openmpi/x.c
    echo 'int gone(void) { return 1; }' > ${dir}/gone/g.c
    gcc -shared -fPIC -Wl,-soname,libshoalgone.so.1 -o ${dir}/gone/libshoalgone.so.1 ${dir}/gone/g.c
    echo 'int gone(void); int plugin(void) { return gone(); }' > ${dir}/gone/p.c
    gcc -shared -fPIC -o ${dir}/plugins/libuct_fake.so.0 ${dir}/gone/p.c -L${dir}/gone -l:libshoalgone.so.1
    rm -r ${dir}/gone
  `);
  const mpich4 = {
    libraries: [`${LIBDIR}/libmpich.so.12`],
    pluginDirs: [{ source: `${LIBDIR}/ucx` }],
  };
  return {
    default: "mpich4",
    types: {
      mpich4,
      mpich3: {
        libraries: [`${dir}/mpich3${LIBDIR}/libmpich.so.12`],
        libraryPath: [`${dir}/mpich3${LIBDIR}`],
      },
      openmpi: { libraries: [`${dir}/openmpi/libmpi.so.40`] },
      broken: {
        ...mpich4,
        pluginDirs: [{ source: `${dir}/plugins`, destination: "/opt/plugins" }],
      },
      gone: { libraries: [`${dir}/gone/libmpich.so.12`] },
    },
  };
}

/**
 * The site with the host MPI types of mpiTypes (in its dir) and both images
 * pushed to the test registry and pulled by the test user.
 */
export async function mpiSite(site: RunSite): Promise<Record<MpiFlavour, string>> {
  await site.writeConfig({ mpi: await mpiTypes(`${site.dir}/mpi`) });
  const { registry } = await testImages();
  const images = { mpich4: "", mpich3: "" };
  for (const flavour of ["mpich4", "mpich3"] as const) {
    images[flavour] = await pushMpiImage(registry, flavour);
    const pull = await site.shoal("user", ["pull", "-q", images[flavour]]);
    if (pull.code !== 0) throw new Error(`pull ${images[flavour]}: ${pull.stderr}`);
  }
  return images;
}

/** `deno run -A tests/support/mpi_images.ts mpich4 mpich3` builds the cache ahead of the tests. */
if (import.meta.main) {
  for (const flavour of Deno.args as MpiFlavour[]) console.log(await mpiImageLayer(flavour));
}
