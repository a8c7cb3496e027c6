/**
 * doctor's GPU section: the GPUs a node's drivers show, the GPUs its PCI bus
 * has without a driver, the CDI spec files runs would read (valid? trusted?
 * still matching the driver?), and for each missing piece its fix. A driver
 * update leaves a generated spec naming the old version's libraries, which
 * no longer exist or no longer match the kernel module: the commonest way a
 * GPU container breaks, so it is said here rather than at the next run.
 */
import type { Check } from "../host/check.ts";
import { SecurityError } from "../errors.ts";
import { readSpecFiles } from "../cdi/registry.ts";
import type { CdiEdits, CdiSpec } from "../cdi/spec.ts";
import {
  type AmdGpu,
  discoverGpus,
  type GpuVendor,
  type NvidiaGpu,
  type PciGpu,
} from "../gpu/discover.ts";
import { NVIDIA_KIND } from "../gpu/generate_nvidia.ts";
import { AMD_KIND } from "../gpu/generate_amd.ts";
import { type JobGpus, jobGpus } from "../gpu/job.ts";

export interface GpuSpecFile {
  path: string;
  /** Null when the file does not parse. */
  kind: string | null;
  /** Its devices, `kind=name`. */
  devices: string[];
  status: "ok" | "invalid" | "untrusted" | "stale";
  /** Why it is not ok. */
  problem?: string;
}

export interface GpuReport {
  nvidia: { driverVersion: string | null; gpus: NvidiaGpu[] } | null;
  amd: { gpus: AmdGpu[] } | null;
  /** Every GPU on the PCI bus, with the driver bound to it. */
  pci: PciGpu[];
  specDirs: string[];
  specs: GpuSpecFile[];
  /** The GPUs the current job may use (its batch system's variables); null: all of the node's. */
  jobGpus: JobGpus | null;
  checks: Check[];
}

const KINDS: Record<GpuVendor, string> = { nvidia: NVIDIA_KIND, amd: AMD_KIND };
const NAMES: Record<GpuVendor, string> = { nvidia: "NVIDIA", amd: "AMD" };
const MODULES: Record<GpuVendor, string> = { nvidia: "nvidia", amd: "amdgpu" };

function allEdits(spec: CdiSpec): CdiEdits[] {
  return [spec.containerEdits ?? {}, ...spec.devices.map((d) => d.containerEdits)];
}

/** Why a valid spec no longer fits the node: a host file gone, or another driver's library. */
function staleness(spec: CdiSpec, driverVersion: string | null): string | undefined {
  const edits = allEdits(spec);
  const paths = [
    ...edits.flatMap((e) => (e.deviceNodes ?? []).map((n) => n.hostPath ?? n.path)),
    ...edits.flatMap((e) => (e.mounts ?? []).map((m) => m.hostPath)),
  ];
  if (spec.kind === NVIDIA_KIND && driverVersion !== null) {
    for (const path of paths) {
      const version = /\/lib(cuda|nvidia-[^/]*)\.so\.(\d+\.\d+(?:\.\d+)?)$/.exec(path)?.[2];
      if (version !== undefined && version !== driverVersion) {
        return `it names ${path.split("/").pop()}, the driver is ${driverVersion}`;
      }
    }
  }
  const gone = paths.find((p) => {
    try {
      Deno.lstatSync(p);
      return false;
    } catch {
      return true;
    }
  });
  return gone === undefined ? undefined : `${gone} does not exist`;
}

/** The GPU section for the tree under `root` (/ but in tests), the spec dirs and the job's `env`. */
export async function gpuReport(
  root: string,
  specDirs: string[],
  checked: boolean,
  env: Record<string, string | undefined>,
): Promise<GpuReport> {
  const found = discoverGpus(root);
  const driverVersion = found.nvidia?.version ?? null;
  const specs: GpuSpecFile[] = (await readSpecFiles(specDirs, checked)).map((f) => {
    if ("error" in f) {
      return {
        path: f.path,
        kind: null,
        devices: [],
        status: f.error instanceof SecurityError ? "untrusted" : "invalid",
        problem: f.error.message,
      };
    }
    const problem = staleness(f.spec, driverVersion);
    return {
      path: f.path,
      kind: f.spec.kind,
      devices: f.spec.devices.map((d) => `${f.spec.kind}=${d.name}`),
      status: problem === undefined ? "ok" : "stale",
      ...(problem === undefined ? {} : { problem }),
    };
  });
  const driven: Record<GpuVendor, number | null> = {
    nvidia: found.nvidia === null ? null : found.nvidia.gpus.length,
    amd: found.amd === null ? null : found.amd.gpus.length,
  };
  return {
    nvidia: found.nvidia && { driverVersion, gpus: found.nvidia.gpus },
    amd: found.amd && { gpus: found.amd.gpus },
    pci: found.pci,
    specDirs,
    specs,
    jobGpus: jobGpus(env) ?? null,
    checks: [
      seenCheck(found.pci, driven, driverVersion),
      ...(["nvidia", "amd"] as const).flatMap((v) => driverCheck(v, found.pci, driven[v])),
      ...(["nvidia", "amd"] as const).flatMap((v) => specCheck(v, driven[v], specs)),
      ...specs.filter((s) => s.status !== "ok").map(fileCheck),
    ],
  };
}

function seenCheck(
  pci: PciGpu[],
  driven: Record<GpuVendor, number | null>,
  driverVersion: string | null,
): Check {
  const base = { id: "gpus", title: "GPUs" };
  const parts = (["nvidia", "amd"] as const).flatMap((v) => {
    const n = driven[v] ?? 0;
    if (n === 0) return [];
    const driver = v === "nvidia" && driverVersion !== null ? ` (driver ${driverVersion})` : "";
    return [`${n} ${NAMES[v]}${driver}`];
  });
  if (parts.length > 0) return { ...base, status: "ok", detail: parts.join(", ") };
  return {
    ...base,
    status: "ok",
    detail: pci.length === 0 ? "none on this node" : `${pci.length} on the PCI bus, none usable`,
  };
}

/** A vendor's GPU on the PCI bus whose driver is not loaded. */
function driverCheck(vendor: GpuVendor, pci: PciGpu[], driven: number | null): Check[] {
  const cards = pci.filter((p) => p.vendor === vendor);
  if (cards.length === 0 || (driven ?? 0) > 0) return [];
  const bound = cards.map((c) => `${c.address} (${c.driver ?? "no driver"})`).join(", ");
  return [{
    id: `gpu-driver-${vendor}`,
    title: `${NAMES[vendor]} driver`,
    status: "warn",
    detail: `${NAMES[vendor]} GPU on PCI ${bound}, but the ${
      MODULES[vendor]
    } kernel module shows none`,
    fix: `install ${NAMES[vendor]}'s driver and load it (modprobe ${MODULES[vendor]})`,
  }];
}

/** A vendor whose GPUs work has a valid spec for them. */
function specCheck(vendor: GpuVendor, driven: number | null, specs: GpuSpecFile[]): Check[] {
  if ((driven ?? 0) === 0) return [];
  const kind = KINDS[vendor];
  const mine = specs.filter((s) => s.kind === kind);
  const base = { id: `cdi-${vendor}`, title: `CDI spec of ${kind}` };
  const fix = `as root: shoal cdi generate --vendor ${vendor}`;
  if (mine.length === 0) {
    return [{
      ...base,
      status: "warn",
      detail: "none: runs cannot ask for these GPUs with --device or --gpus",
      fix,
    }];
  }
  const good = mine.filter((s) => s.status === "ok");
  return [{
    ...base,
    status: good.length === mine.length ? "ok" : "warn",
    detail: mine.map((s) => `${s.path} (${s.status})`).join(", "),
    ...(good.length === mine.length ? {} : { fix }),
  }];
}

function fileCheck(spec: GpuSpecFile): Check {
  const fix = spec.status === "stale"
    ? `as root: shoal cdi generate${
      spec.kind === NVIDIA_KIND ? " --vendor nvidia" : spec.kind === AMD_KIND ? " --vendor amd" : ""
    } again (after every driver update), or remove ${spec.path}`
    : `fix or remove ${spec.path}: every run asking for a CDI device fails until then`;
  return {
    id: "cdi-spec",
    title: `CDI spec ${spec.path}`,
    status: spec.status === "stale" ? "warn" : "fail",
    detail: `${spec.status}: ${spec.problem}`,
    fix,
  };
}
