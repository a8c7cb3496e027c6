/**
 * The GPUs of a root tree, as their kernel drivers describe them: NVIDIA's
 * /proc/driver/nvidia, AMD's KFD topology in /sys/class/kfd, and the PCI
 * devices of either vendor, which say a GPU is there even when no driver
 * took it. Nothing here opens a device: everything is read from files under
 * `root`, so tests and image-building sites point it at a tree of their own.
 * Paths in the result are as seen from inside that tree ("/dev/nvidia0").
 */
import { compareStrings } from "../compare.ts";

export interface NvidiaGpu {
  /** nvidia-smi's and CUDA's index: the GPUs in PCI bus order. */
  index: number;
  /** The `Device Minor`: the N of /dev/nvidiaN. */
  minor: number;
  /** `GPU-...`, as nvidia-smi -L prints it; null where the driver does not say it (yet). */
  uuid: string | null;
  model: string;
  busId: string;
}

export interface NvidiaDriver {
  /** From /proc/driver/nvidia/version, e.g. "550.54.14"; null when unreadable. */
  version: string | null;
  gpus: NvidiaGpu[];
}

export interface AmdGpu {
  /** ROCm's index (ROCR_VISIBLE_DEVICES): the GPU nodes in KFD topology order. */
  index: number;
  gpuId: number;
  /** The N of /dev/dri/renderDN. */
  renderMinor: number;
  /** The /dev/dri/cardN of the same GPU, where /sys/class/drm says which. */
  card: string | null;
}

export interface AmdDriver {
  gpus: AmdGpu[];
}

export type GpuVendor = "nvidia" | "amd";

/** A PCI display controller of a GPU vendor, with or without a driver. */
export interface PciGpu {
  address: string;
  vendor: GpuVendor;
  /** The kernel driver bound to it ("nvidia", "amdgpu", "nouveau"...), or null. */
  driver: string | null;
}

export interface Discovery {
  root: string;
  /** Null when the NVIDIA kernel module is not loaded (no /proc/driver/nvidia). */
  nvidia: NvidiaDriver | null;
  /** Null when AMD's KFD is not there (no /sys/class/kfd/kfd/topology). */
  amd: AmdDriver | null;
  pci: PciGpu[];
}

export const PCI_VENDORS: Record<string, GpuVendor> = { "0x10de": "nvidia", "0x1002": "amd" };

/** `path` (absolute, as inside the tree) on this machine. */
export function under(root: string, path: string): string {
  return root === "/" ? path : `${root.replace(/\/+$/, "")}${path}`;
}

function readText(path: string): string | null {
  try {
    return Deno.readTextFileSync(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound || err instanceof Deno.errors.NotADirectory) {
      return null;
    }
    throw new Error(`cannot read ${path}: ${(err as Error).message}`);
  }
}

/** The names in `dir`, sorted; none when it does not exist. */
export function entries(dir: string): string[] {
  try {
    return [...Deno.readDirSync(dir)].map((e) => e.name).sort(compareStrings);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound || err instanceof Deno.errors.NotADirectory) return [];
    throw new Error(`cannot read ${dir}: ${(err as Error).message}`);
  }
}

/** `Key: value` lines (NVIDIA's /proc files) or `key value` lines (KFD's properties). */
function fields(text: string, separator: RegExp): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split("\n")) {
    const m = separator.exec(line);
    if (m?.index) out.set(line.slice(0, m.index).trim(), line.slice(m.index + m[0].length).trim());
  }
  return out;
}

/** "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  Thu Feb ..." (open module alike). */
export function nvidiaDriverVersion(text: string): string | null {
  const first = text.split("\n").find((l) => l.startsWith("NVRM version:")) ?? "";
  return /\s(\d+\.\d+(?:\.\d+)?)\s/.exec(`${first} `)?.[1] ?? null;
}

function discoverNvidia(root: string): NvidiaDriver | null {
  const base = under(root, "/proc/driver/nvidia");
  const versionText = readText(`${base}/version`);
  const busIds = entries(`${base}/gpus`);
  if (versionText === null && busIds.length === 0) return null;
  const gpus: Omit<NvidiaGpu, "index">[] = [];
  for (const busId of busIds) {
    const info = readText(`${base}/gpus/${busId}/information`);
    if (info === null) continue;
    const f = fields(info, /:\s/);
    const minor = Number.parseInt(f.get("Device Minor") ?? "", 10);
    // "GPU-????????-..." from a driver that has not initialised the GPU yet.
    const uuid = /^GPU-[0-9a-f]+(-[0-9a-f]+)*$/i.exec(f.get("GPU UUID") ?? "")?.[0] ?? null;
    // A GPU excluded from use (NVreg_ExcludedGpus) has no usable node.
    if (!Number.isInteger(minor) || f.get("GPU Excluded") === "Yes") continue;
    gpus.push({ minor, uuid, model: f.get("Model") ?? "", busId: f.get("Bus Location") ?? busId });
  }
  gpus.sort((a, b) => compareStrings(a.busId.toLowerCase(), b.busId.toLowerCase()));
  return {
    version: versionText === null ? null : nvidiaDriverVersion(versionText),
    gpus: gpus.map((g, index) => ({ index, ...g })),
  };
}

function discoverAmd(root: string): AmdDriver | null {
  const topology = under(root, "/sys/class/kfd/kfd/topology/nodes");
  const nodes = entries(topology).filter((n) => /^\d+$/.test(n))
    .sort((a, b) => Number(a) - Number(b));
  if (nodes.length === 0) return null;
  const gpus: AmdGpu[] = [];
  for (const node of nodes) {
    const gpuId = Number.parseInt(readText(`${topology}/${node}/gpu_id`) ?? "0", 10);
    const props = fields(readText(`${topology}/${node}/properties`) ?? "", /\s/);
    const renderMinor = Number.parseInt(props.get("drm_render_minor") ?? "", 10);
    // CPU nodes have gpu_id 0 and no render node.
    if (!(gpuId > 0) || !(renderMinor > 0)) continue;
    const siblings = entries(under(root, `/sys/class/drm/renderD${renderMinor}/device/drm`));
    const card = siblings.find((n) => /^card\d+$/.test(n));
    gpus.push({
      index: gpus.length,
      gpuId,
      renderMinor,
      card: card === undefined ? null : `/dev/dri/${card}`,
    });
  }
  return { gpus };
}

function discoverPci(root: string): PciGpu[] {
  const dir = under(root, "/sys/bus/pci/devices");
  const out: PciGpu[] = [];
  for (const address of entries(dir)) {
    const vendor = PCI_VENDORS[(readText(`${dir}/${address}/vendor`) ?? "").trim()];
    // Class 0x03xxxx: display controllers (VGA, 3D, other), which compute GPUs are.
    const isDisplay = (readText(`${dir}/${address}/class`) ?? "").trim().startsWith("0x03");
    if (vendor === undefined || !isDisplay) continue;
    let driver: string | null = null;
    try {
      driver = Deno.readLinkSync(`${dir}/${address}/driver`).split("/").pop() ?? null;
    } catch { /* no driver bound */ }
    out.push({ address, vendor, driver });
  }
  return out;
}

/** Every GPU the tree under `root` shows. */
export function discoverGpus(root: string): Discovery {
  return { root, nvidia: discoverNvidia(root), amd: discoverAmd(root), pci: discoverPci(root) };
}
