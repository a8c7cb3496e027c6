/**
 * The CDI spec of a node's NVIDIA GPUs, as NVIDIA's own generator (nvidia-ctk
 * cdi generate) names them: kind nvidia.com/gpu, each GPU by index and by
 * UUID, and "all". The driver's user-space half must match its kernel module
 * exactly, so the libraries come from the host and not the image: those the
 * linker cache lists whose file carries the running driver's version
 * (libcuda.so.550.54.14, libnvidia-ml.so.550.54.14, ...). That rule can
 * never pick a host glibc, which is not versioned so; the name check below
 * says so outright.
 */
import { ShoalError } from "../errors.ts";
import { basename } from "../path.ts";
import type { CdiDeviceNode, CdiMount } from "../cdi/spec.ts";
import { type Discovery, under } from "./discover.ts";
import { readLdCache } from "./ldcache.ts";
import { isGlibc } from "../sys/ldcache.ts";
import { exists } from "../sys/fs.ts";
import {
  deviceNode,
  finishSpec,
  type Generated,
  readOnlyMount,
  resolveInTree,
  uniqueMounts,
} from "./generate.ts";

export const NVIDIA_KIND = "nvidia.com/gpu";

/** The driver's programs containers may run (nvidia-smi first), where the tree has them. */
const BINARIES = [
  "nvidia-smi",
  "nvidia-debugdump",
  "nvidia-persistenced",
  "nvidia-cuda-mps-control",
  "nvidia-cuda-mps-server",
];
const BIN_DIRS = ["/usr/bin", "/usr/sbin", "/bin", "/sbin", "/usr/local/bin"];

const MODPROBE =
  "load the driver's device nodes as root: nvidia-modprobe -c 0 -u (or run nvidia-smi once)";

/**
 * The driver libraries of `version` in the tree's linker cache, each at the
 * path of its soname, the name the loader and dlopen() look for: one mount
 * per library (a node's driver has some 40), not one more for its file name.
 */
function driverLibraries(root: string, version: string): CdiMount[] {
  const mounts: CdiMount[] = [];
  for (const lib of readLdCache(root)) {
    if (isGlibc(lib.soname)) continue;
    const real = resolveInTree(root, lib.path);
    if (real === null || !basename(real).endsWith(`.so.${version}`)) continue;
    mounts.push(readOnlyMount(root, real, lib.path));
  }
  return uniqueMounts(mounts);
}

function binaries(root: string): CdiMount[] {
  return BINARIES.flatMap((name) => {
    for (const dir of BIN_DIRS) {
      const real = resolveInTree(root, `${dir}/${name}`);
      if (real !== null) return [readOnlyMount(root, real, `${dir}/${name}`)];
    }
    return [];
  });
}

/** The spec of the NVIDIA GPUs of `found`; throws naming what is missing and its fix. */
export function nvidiaSpec(found: Discovery): Generated {
  const { root, nvidia } = found;
  const card = found.pci.find((p) => p.vendor === "nvidia");
  if (nvidia === null) {
    throw new ShoalError(
      `no NVIDIA driver under ${root}: ${under(root, "/proc/driver/nvidia")} does not exist`,
      {
        hint: card === undefined
          ? "this node has no NVIDIA GPU; for AMD GPUs use --vendor amd"
          : `the NVIDIA GPU at PCI ${card.address} has ${
            card.driver === null ? "no driver" : `the ${card.driver} driver`
          }: install and load NVIDIA's (modprobe nvidia)`,
      },
    );
  }
  if (nvidia.version === null) {
    throw new ShoalError(
      `cannot tell the NVIDIA driver's version from ${under(root, "/proc/driver/nvidia/version")}`,
      { hint: "reload the driver (modprobe nvidia), or ask NVIDIA's support" },
    );
  }
  if (nvidia.gpus.length === 0) {
    throw new ShoalError(`the NVIDIA driver ${nvidia.version} under ${root} shows no GPU`, {
      hint: "see nvidia-smi and the kernel log for why",
    });
  }
  const warnings = nvidia.gpus.filter((g) => g.uuid === null).map((g) =>
    `the driver does not say GPU ${g.index}'s UUID yet: it is named by its index only ` +
    "(enable persistence mode, nvidia-smi -pm 1, and generate again)"
  );
  const gpus = nvidia.gpus.map((g) => ({
    names: [String(g.index), ...(g.uuid === null ? [] : [g.uuid])],
    edits: { deviceNodes: [deviceNode(root, `/dev/nvidia${g.minor}`, MODPROBE)] },
  }));
  const optional = ["/dev/nvidia-uvm-tools", "/dev/nvidia-modeset"]
    .filter((p) => exists(under(root, p)));
  const nodes: CdiDeviceNode[] = ["/dev/nvidiactl", "/dev/nvidia-uvm", ...optional]
    .map((p) => deviceNode(root, p, MODPROBE));
  const libraries = driverLibraries(root, nvidia.version);
  if (!libraries.some((m) => basename(m.containerPath).startsWith("libcuda.so"))) {
    warnings.push(
      `no libcuda.so.${nvidia.version} in the linker cache of ${root}: containers get the GPUs but not CUDA ` +
        "(install the driver's user-space libraries of the same version, then run ldconfig)",
    );
  }
  const firmware = `/lib/firmware/nvidia/${nvidia.version}`;
  const firmwareReal = resolveInTree(root, firmware);
  const mounts = [
    ...libraries,
    ...binaries(root),
    ...(firmwareReal === null ? [] : [readOnlyMount(root, firmwareReal, firmware)]),
  ];
  return {
    spec: finishSpec(NVIDIA_KIND, gpus, { deviceNodes: nodes, mounts }),
    warnings,
  };
}
