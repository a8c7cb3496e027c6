/**
 * One CDI spec file, checked strictly: a key the spec does not define is an
 * error (a misspelt `hostpath` would silently give a container the wrong
 * node), and so is a field newer than the file's `cdiVersion` says, as the
 * reference implementation (container-device-interface, version.go) refuses
 * them. Versions 0.3.0 (the first the reference still reads) to 1.1.0.
 */
import {
  array,
  boolean,
  dictionary,
  exact,
  integer,
  nonEmpty,
  oneOf,
  optional,
  ShapeError,
  string,
} from "../shape.ts";
import { absolute, envEntry, HOOK_STAGES, type HookStage } from "../runtime/hooks.ts";
import { deviceNameProblem, kindProblem } from "./name.ts";

export const CDI_VERSIONS = [
  "0.3.0",
  "0.4.0",
  "0.5.0",
  "0.6.0",
  "0.7.0",
  "0.8.0",
  "1.0.0",
  "1.1.0",
] as const;
export type CdiVersion = typeof CDI_VERSIONS[number];

export interface CdiDeviceNode {
  path: string;
  hostPath?: string;
  type?: "c" | "b" | "u" | "p";
  major?: number;
  minor?: number;
  fileMode?: number;
  permissions?: string;
  uid?: number;
  gid?: number;
}

export interface CdiMount {
  hostPath: string;
  containerPath: string;
  options?: string[];
  type?: string;
}

export interface CdiHook {
  hookName: HookStage;
  path: string;
  args?: string[];
  env?: string[];
  timeout?: number;
}

export interface CdiNetDevice {
  hostInterfaceName: string;
  name: string;
}

export interface CdiIntelRdt {
  closID?: string;
  l3CacheSchema?: string;
  memBwSchema?: string;
  /** Before 1.1.0 only. */
  enableCMT?: boolean;
  enableMBM?: boolean;
  /** 1.1.0 on. */
  schemata?: string[];
  enableMonitoring?: boolean;
}

export interface CdiEdits {
  env?: string[];
  deviceNodes?: CdiDeviceNode[];
  netDevices?: CdiNetDevice[];
  mounts?: CdiMount[];
  hooks?: CdiHook[];
  intelRdt?: CdiIntelRdt;
  additionalGids?: number[];
}

export interface CdiDevice {
  name: string;
  annotations?: Record<string, string>;
  containerEdits: CdiEdits;
}

export interface CdiSpec {
  cdiVersion: CdiVersion;
  kind: string;
  annotations?: Record<string, string>;
  devices: CdiDevice[];
  containerEdits?: CdiEdits;
}

const uint32 = (v: unknown, at: string) => {
  const n = integer(0)(v, at);
  if (n > 0xffffffff) throw new ShapeError(at, "an integer below 2^32");
  return n;
};
const annotations = dictionary(string());

const deviceNode = exact({
  path: absolute,
  hostPath: optional(absolute),
  type: optional(oneOf(["c", "b", "u", "p"] as const)),
  major: optional(integer(0)),
  minor: optional(integer(0)),
  fileMode: optional(integer(0)),
  // "" means rwm, "none" no access (the CDI spec); the host's own permissions decide here.
  permissions: optional(string((s) => /^([rwm]*|none)$/.test(s), "r, w, m letters or none")),
  uid: optional(uint32),
  gid: optional(uint32),
});

const mount = exact({
  hostPath: absolute,
  containerPath: absolute,
  options: optional(array(string())),
  type: optional(nonEmpty),
});

const hook = exact({
  hookName: oneOf(HOOK_STAGES),
  path: absolute,
  args: optional(array(string())),
  env: optional(array(envEntry)),
  timeout: optional(integer(1)),
});

const intelRdt = exact({
  closID: optional(string()),
  l3CacheSchema: optional(string()),
  memBwSchema: optional(string()),
  enableCMT: optional(boolean),
  enableMBM: optional(boolean),
  schemata: optional(array(string())),
  enableMonitoring: optional(boolean),
});

const netDevice = exact({ hostInterfaceName: nonEmpty, name: nonEmpty });

const edits = exact({
  env: optional(array(envEntry)),
  deviceNodes: optional(array(deviceNode)),
  netDevices: optional(array(netDevice)),
  mounts: optional(array(mount)),
  hooks: optional(array(hook)),
  intelRdt: optional(intelRdt),
  additionalGids: optional(array(uint32)),
});

const device = exact({
  name: string(
    (s) => deviceNameProblem(s) === undefined,
    "a device name (letters, digits, '.', ':', '-', '_'; starting and ending with a letter or digit)",
  ),
  annotations: optional(annotations),
  containerEdits: edits,
});

const specFile = exact({
  cdiVersion: oneOf(CDI_VERSIONS),
  kind: string((s) => kindProblem(s) === undefined, "a kind vendor/class (e.g. vendor.com/gpu)"),
  annotations: optional(annotations),
  devices: array(device),
  containerEdits: optional(edits),
}, (spec, at) => {
  if (spec.devices.length === 0) throw new ShapeError(at ? `${at}.devices` : "devices", "a device");
});

/** Where a field newer than 0.3.0 is used, and the version that brought it. */
interface Need {
  at: string;
  version: CdiVersion;
  what: string;
}

function editNeeds(e: CdiEdits | undefined, at: string): Need[] {
  if (e === undefined) return [];
  const needs: Need[] = [];
  for (const [i, m] of (e.mounts ?? []).entries()) {
    if (m.type !== undefined) {
      needs.push({ at: `${at}.mounts.${i}.type`, version: "0.4.0", what: "a mount type" });
    }
  }
  for (const [i, d] of (e.deviceNodes ?? []).entries()) {
    if (d.hostPath !== undefined) {
      needs.push({
        at: `${at}.deviceNodes.${i}.hostPath`,
        version: "0.5.0",
        what: "a device node's hostPath",
      });
    }
  }
  if (e.intelRdt !== undefined) {
    needs.push({ at: `${at}.intelRdt`, version: "0.7.0", what: "intelRdt" });
  }
  for (const key of ["schemata", "enableMonitoring"] as const) {
    if (e.intelRdt?.[key] !== undefined) {
      needs.push({ at: `${at}.intelRdt.${key}`, version: "1.1.0", what: `intelRdt.${key}` });
    }
  }
  if ((e.netDevices ?? []).length > 0) {
    needs.push({ at: `${at}.netDevices`, version: "1.1.0", what: "netDevices" });
  }
  if ((e.additionalGids ?? []).length > 0) {
    needs.push({ at: `${at}.additionalGids`, version: "0.7.0", what: "additionalGids" });
  }
  return needs;
}

/** Where an intelRdt field that 1.1.0 dropped is used. */
function dropped(e: CdiEdits | undefined, at: string): string | undefined {
  const key = (["enableCMT", "enableMBM"] as const).find((k) => e?.intelRdt?.[k] !== undefined);
  return key && `${at}.intelRdt.${key}`;
}

function needs(spec: CdiSpec): Need[] {
  const out = editNeeds(spec.containerEdits, "containerEdits");
  if (spec.annotations !== undefined) {
    out.push({ at: "annotations", version: "0.6.0", what: "annotations" });
  }
  if (spec.kind.slice(spec.kind.indexOf("/") + 1).includes(".")) {
    out.push({ at: "kind", version: "0.6.0", what: "a '.' in the class" });
  }
  for (const [i, d] of spec.devices.entries()) {
    if (/^[0-9]/.test(d.name)) {
      out.push({
        at: `devices.${i}.name`,
        version: "0.5.0",
        what: "a device name starting with a digit",
      });
    }
    if (d.annotations !== undefined) {
      out.push({ at: `devices.${i}.annotations`, version: "0.6.0", what: "annotations" });
    }
    out.push(...editNeeds(d.containerEdits, `devices.${i}.containerEdits`));
  }
  return out;
}

/** The oldest cdiVersion that has every field `spec` uses: what a generator writes, for the most readers. */
export function minimumVersion(spec: Omit<CdiSpec, "cdiVersion">): CdiVersion {
  const rank = (v: CdiVersion) => CDI_VERSIONS.indexOf(v);
  const all = needs({ ...spec, cdiVersion: "0.3.0" }).map((n) => n.version);
  return all.reduce((a, b) => rank(b) > rank(a) ? b : a, "0.3.0" as CdiVersion);
}

/** The spec in `value` (a file's parsed JSON or YAML); throws a ShapeError naming the field. */
export function checkSpec(value: unknown): CdiSpec {
  const spec = specFile(value, "") as CdiSpec;
  const rank = (v: CdiVersion) => CDI_VERSIONS.indexOf(v);
  const tooNew = needs(spec).find((n) => rank(n.version) > rank(spec.cdiVersion));
  if (tooNew !== undefined) {
    throw new ShapeError(
      tooNew.at,
      `cdiVersion ${tooNew.version} or later for ${tooNew.what} (the file says ${spec.cdiVersion})`,
    );
  }
  if (rank(spec.cdiVersion) >= rank("1.1.0")) {
    const at = [
      dropped(spec.containerEdits, "containerEdits"),
      ...spec.devices.map((d, i) => dropped(d.containerEdits, `devices.${i}.containerEdits`)),
    ].find((a) => a !== undefined);
    if (at !== undefined) {
      throw new ShapeError(
        at,
        "no enableCMT or enableMBM from cdiVersion 1.1.0 on (use enableMonitoring)",
      );
    }
  }
  const seen = new Set<string>();
  for (const [i, d] of spec.devices.entries()) {
    if (seen.has(d.name)) {
      throw new ShapeError(`devices.${i}.name`, `a name not used before ("${d.name}" is)`);
    }
    seen.add(d.name);
  }
  return spec;
}
