/**
 * Fake GPU nodes for the generator, doctor and run tests: a root tree with
 * what NVIDIA's and AMD's kernel drivers show (/proc/driver/nvidia, the KFD
 * topology, /sys/bus/pci), device nodes (character devices with /dev/null's
 * numbers, usable by everyone), driver libraries (tiny ELF libraries built
 * by gcc with their real sonames) and the tree's own linker cache, written
 * by ldconfig -r as a driver install leaves it.
 */
import { runCommand } from "./shoal.ts";

export const LIBDIR = "/usr/lib/x86_64-linux-gnu";

export interface FakeNvidiaGpu {
  busId: string;
  minor: number;
  uuid: string;
}

export const TWO_GPUS: FakeNvidiaGpu[] = [
  // Listed out of bus order and with minors not in index order, as real nodes can be.
  { busId: "0000:86:00.0", minor: 0, uuid: "GPU-bbbbbbbb-0000-0000-0000-000000000002" },
  { busId: "0000:3b:00.0", minor: 1, uuid: "GPU-aaaaaaaa-0000-0000-0000-000000000001" },
];

async function must(cmd: string, args: string[]): Promise<void> {
  const r = await runCommand(cmd, args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(" ")}: ${r.stderr}`);
}

async function write(root: string, path: string, text: string, mode = 0o644): Promise<void> {
  const full = `${root}${path}`;
  await Deno.mkdir(full.slice(0, full.lastIndexOf("/")), { recursive: true, mode: 0o755 });
  await Deno.writeTextFile(full, text);
  await Deno.chmod(full, mode);
}

/** A character device node everyone can read and write (/dev/null's 1:3). */
export async function fakeNode(root: string, path: string): Promise<void> {
  const full = `${root}${path}`;
  await Deno.mkdir(full.slice(0, full.lastIndexOf("/")), { recursive: true, mode: 0o755 });
  await must("mknod", ["-m", "666", full, "c", "1", "3"]);
}

/**
 * An ELF shared library `file` with `soname`, holding the string `marker`;
 * `newGlibc`: it calls dlopen, which this host's glibc versions GLIBC_2.34.
 */
export async function fakeLibrary(
  root: string,
  file: string,
  soname: string,
  marker: string,
  newGlibc = false,
) {
  const source = await Deno.makeTempFile({ suffix: ".c" });
  try {
    await Deno.writeTextFile(
      source,
      `const char shoal_marker[] = "${marker}";\n` +
        (newGlibc ? "#include <dlfcn.h>\nvoid *shoal_load(void) { return dlopen(0, 0); }\n" : ""),
    );
    await Deno.mkdir(`${root}${file.slice(0, file.lastIndexOf("/"))}`, { recursive: true });
    await must("gcc", [
      "-shared",
      "-fPIC",
      `-Wl,-soname,${soname}`,
      "-o",
      `${root}${file}`,
      source,
    ]);
  } finally {
    await Deno.remove(source);
  }
}

/** The tree's linker cache and soname links, from its own libraries only. */
export async function fakeLdCache(root: string): Promise<void> {
  await write(root, "/etc/ld.so.conf", `${LIBDIR}\n`);
  await must("ldconfig", ["-r", root]);
}

/** A PCI display controller of `vendor` (0x10de NVIDIA, 0x1002 AMD), bound to `driver` if given. */
export async function fakePciGpu(root: string, address: string, vendor: string, driver?: string) {
  const dir = `/sys/bus/pci/devices/${address}`;
  await write(root, `${dir}/vendor`, `${vendor}\n`);
  await write(root, `${dir}/class`, "0x030200\n");
  if (driver !== undefined) {
    await Deno.mkdir(`${root}/sys/bus/pci/drivers/${driver}`, { recursive: true });
    await Deno.symlink(`../../../bus/pci/drivers/${driver}`, `${root}${dir}/driver`);
  }
}

/**
 * An NVIDIA node with driver `version`: its /proc files, nodes, the driver's
 * libraries (libcuda, libnvidia-ml) and a library of another version left by
 * an older driver, a library not of the driver, nvidia-smi (a script saying
 * "fake nvidia-smi VERSION") and the GSP firmware.
 */
export async function fakeNvidiaNode(
  root: string,
  version: string,
  gpus = TWO_GPUS,
  newGlibc = false,
) {
  await write(
    root,
    "/proc/driver/nvidia/version",
    `NVRM version: NVIDIA UNIX x86_64 Kernel Module  ${version}  Thu Feb 22 01:44:30 UTC 2024\n` +
      "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n",
  );
  for (const g of gpus) {
    await write(
      root,
      `/proc/driver/nvidia/gpus/${g.busId}/information`,
      `Model: \t\t NVIDIA H100 80GB HBM3\nIRQ:   \t\t 0\nGPU UUID: \t ${g.uuid}\n` +
        `Video BIOS: \t ??.??.??.??.??\nBus Type: \t PCIe\nDMA Size: \t 52 bits\n` +
        `DMA Mask: \t 0xfffffffffffff\nBus Location: \t ${g.busId}\nDevice Minor: \t ${g.minor}\n` +
        "GPU Excluded:\t No\n",
    );
    await fakeNode(root, `/dev/nvidia${g.minor}`);
    await fakePciGpu(root, g.busId, "0x10de", "nvidia");
  }
  for (const node of ["nvidiactl", "nvidia-uvm", "nvidia-uvm-tools"]) {
    await fakeNode(root, `/dev/${node}`);
  }
  await fakeLibrary(
    root,
    `${LIBDIR}/libcuda.so.${version}`,
    "libcuda.so.1",
    `libcuda ${version}`,
    newGlibc,
  );
  await fakeLibrary(
    root,
    `${LIBDIR}/libnvidia-ml.so.${version}`,
    "libnvidia-ml.so.1",
    `libnvidia-ml ${version}`,
  );
  await fakeLibrary(root, `${LIBDIR}/libnvidia-old.so.1.2.3`, "libnvidia-old.so.1", "old");
  await fakeLibrary(root, `${LIBDIR}/libz.so.1.2.13`, "libz.so.1", "zlib");
  await fakeLdCache(root);
  await write(root, "/usr/bin/nvidia-smi", `#!/bin/sh\necho "fake nvidia-smi ${version}"\n`, 0o755);
  await write(root, `/lib/firmware/nvidia/${version}/gsp_ga10x.bin`, "firmware\n");
}

/** An AMD node: a CPU node and two GPU nodes in the KFD topology, their render and card nodes, /opt/rocm. */
export async function fakeAmdNode(root: string) {
  const topology = "/sys/class/kfd/kfd/topology/nodes";
  await write(root, `${topology}/0/gpu_id`, "0\n");
  await write(
    root,
    `${topology}/0/properties`,
    "cpu_cores_count 16\nsimd_count 0\ndrm_render_minor 0\n",
  );
  for (const [i, minor] of [[1, 128], [2, 129]] as const) {
    await write(root, `${topology}/${i}/gpu_id`, `${41000 + i}\n`);
    await write(
      root,
      `${topology}/${i}/properties`,
      `cpu_cores_count 0\nsimd_count 304\nvendor_id 4098\ndevice_id 29856\ndrm_render_minor ${minor}\n`,
    );
    await Deno.mkdir(`${root}/sys/class/drm/renderD${minor}/device/drm/card${i - 1}`, {
      recursive: true,
    });
    await fakeNode(root, `/dev/dri/renderD${minor}`);
    await fakeNode(root, `/dev/dri/card${i - 1}`);
    await fakePciGpu(root, `0000:0${i}:00.0`, "0x1002", "amdgpu");
  }
  await fakeNode(root, "/dev/kfd");
  await write(root, "/opt/rocm-6.1.0/lib/libamdhip64.so.6", "hip\n");
  await Deno.symlink("rocm-6.1.0", `${root}/opt/rocm`);
}
