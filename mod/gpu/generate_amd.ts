/**
 * The CDI spec of a node's AMD GPUs: kind amd.com/gpu, each GPU by its ROCm
 * index and "all". Every GPU process opens /dev/kfd; each GPU is its DRM
 * render node (and card node). ROCm's user space usually comes with the
 * image; where the host has ROCm, it is offered read-only at /opt/rocm.
 */
import { ShoalError } from "../errors.ts";
import type { CdiMount } from "../cdi/spec.ts";
import { type Discovery, entries, under } from "./discover.ts";
import { readLdCache } from "./ldcache.ts";
import {
  deviceNode,
  finishSpec,
  type Generated,
  readOnlyMount,
  resolveInTree,
  uniqueMounts,
} from "./generate.ts";

export const AMD_KIND = "amd.com/gpu";

/** ROCm's runtime libraries, looked for in the linker cache when there is no /opt/rocm. */
const ROCM_LIBRARY = /^lib(hsa-runtime64|amdhip64|rocm_smi64|hsakmt|rocm-core)\.so/;

const UDEV = "the amdgpu driver makes it: load it (modprobe amdgpu) and check udev";

/** /opt/rocm, else the newest /opt/rocm-X.Y.Z (an install without the link). */
function rocmDir(root: string): string | null {
  const linked = resolveInTree(root, "/opt/rocm");
  if (linked !== null) return linked;
  const version = (name: string) => name.slice(5).split(".").map(Number);
  const newest = entries(under(root, "/opt")).filter((n) => /^rocm-\d+(\.\d+)*$/.test(n))
    .sort((a, b) => {
      const [x, y] = [version(a), version(b)];
      const i = x.findIndex((n, i) => n !== y[i]);
      return i < 0 ? x.length - y.length : x[i]! - (y[i] ?? -1);
    }).pop();
  return newest === undefined ? null : resolveInTree(root, `/opt/${newest}`);
}

function rocm(root: string): CdiMount[] {
  const real = rocmDir(root);
  if (real !== null) {
    // Scripts name both /opt/rocm and the versioned directory it points to.
    return uniqueMounts([readOnlyMount(root, real, "/opt/rocm"), readOnlyMount(root, real, real)]);
  }
  return uniqueMounts(
    readLdCache(root).flatMap((lib) => {
      const file = ROCM_LIBRARY.test(lib.soname) ? resolveInTree(root, lib.path) : null;
      return file === null ? [] : [readOnlyMount(root, file, lib.path)];
    }),
  );
}

/** The spec of the AMD GPUs of `found`; throws naming what is missing and its fix. */
export function amdSpec(found: Discovery): Generated {
  const { root, amd } = found;
  if (amd === null || amd.gpus.length === 0) {
    const card = found.pci.find((p) => p.vendor === "amd");
    throw new ShoalError(
      `no AMD GPU under ${root}: ${under(root, "/sys/class/kfd/kfd/topology/nodes")} lists none`,
      {
        hint: card === undefined
          ? "this node has no AMD GPU; for NVIDIA GPUs use --vendor nvidia"
          : `the AMD GPU at PCI ${card.address} has ${
            card.driver === null ? "no driver" : `the ${card.driver} driver`
          }: load amdgpu (modprobe amdgpu)`,
      },
    );
  }
  const gpus = amd.gpus.map((g) => ({
    names: [String(g.index)],
    edits: {
      deviceNodes: [`/dev/dri/renderD${g.renderMinor}`, ...(g.card === null ? [] : [g.card])]
        .map((p) => deviceNode(root, p, UDEV)),
    },
  }));
  const mounts = rocm(root);
  return {
    spec: finishSpec(AMD_KIND, gpus, {
      deviceNodes: [deviceNode(root, "/dev/kfd", UDEV)],
      ...(mounts.length === 0 ? {} : { mounts }),
    }),
    warnings: [],
  };
}
