/**
 * The part of the OCI runtime configuration (config.json, runtime-spec 1.0.2
 * plus `process.user.umask`, which runc 1.1 takes) that shoal writes, and a
 * check of the fields the specification requires, so a mistake here surfaces
 * as one clear error before runc reports it in its own terms.
 */
import { isAbsolute } from "../path.ts";
import type { IdMapping } from "./idmap.ts";
import type { OciHooks } from "./hooks.ts";

export const OCI_VERSION = "1.0.2-dev";

export interface OciUser {
  uid: number;
  gid: number;
  umask?: number;
  additionalGids?: number[];
}

export interface OciCapabilities {
  bounding: string[];
  effective: string[];
  permitted: string[];
  inheritable: string[];
  ambient: string[];
}

export interface OciProcess {
  terminal: boolean;
  user: OciUser;
  args: string[];
  env: string[];
  cwd: string;
  capabilities: OciCapabilities;
  noNewPrivileges: boolean;
}

export interface OciMount {
  destination: string;
  type: string;
  source: string;
  options?: string[];
}

export type NamespaceType = "pid" | "network" | "mount" | "ipc" | "uts" | "user" | "cgroup";

export interface OciLinux {
  /** Absent when the container stays in the user namespace runc runs in. */
  uidMappings?: IdMapping[];
  gidMappings?: IdMapping[];
  /** `path`: join that namespace instead of creating one. */
  namespaces: { type: NamespaceType; path?: string }[];
  maskedPaths: string[];
  readonlyPaths: string[];
  seccomp?: Record<string, unknown>;
}

export interface OciSpec {
  ociVersion: string;
  process: OciProcess;
  root: { path: string; readonly: boolean };
  hostname?: string;
  mounts: OciMount[];
  annotations?: Record<string, string>;
  hooks?: OciHooks;
  linux: OciLinux;
}

const NAMESPACES = new Set(["pid", "network", "mount", "ipc", "uts", "user", "cgroup"]);

function isId(n: unknown): boolean {
  return Number.isInteger(n) && (n as number) >= 0 && (n as number) <= 0xffffffff;
}

/**
 * The violations of the runtime-spec's requirements (and of runc's rules for
 * combinations) in `spec`; empty when it is valid.
 */
export function specProblems(spec: OciSpec): string[] {
  const problems: string[] = [];
  const p = (cond: boolean, msg: string) => {
    if (!cond) problems.push(msg);
  };
  p(/^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$/.test(spec.ociVersion), "ociVersion must be SemVer");
  p(spec.root.path !== "", "root.path is required");
  const proc = spec.process;
  p(proc.args.length > 0 && proc.args[0] !== "", "process.args needs a command");
  p(isAbsolute(proc.cwd), "process.cwd must be absolute");
  p(isId(proc.user.uid) && isId(proc.user.gid), "process.user uid/gid must be ids");
  p(proc.env.every((e) => e.indexOf("=") > 0), "process.env entries must be NAME=VALUE");
  for (const set of Object.values(proc.capabilities) as string[][]) {
    p(set.every((c) => /^CAP_[A-Z_]+$/.test(c)), "capabilities must be CAP_ names");
  }
  for (const m of spec.mounts) {
    p(isAbsolute(m.destination), `mount destination ${m.destination} must be absolute`);
    p(m.source !== "" && m.type !== "", `mount ${m.destination} needs a source and a type`);
  }
  const types = spec.linux.namespaces.map((n) => n.type);
  p(types.every((t) => NAMESPACES.has(t)), "unknown namespace type");
  p(new Set(types).size === types.length, "namespace types must be unique");
  const hasUserNs = types.includes("user");
  for (const m of [...spec.linux.uidMappings ?? [], ...spec.linux.gidMappings ?? []]) {
    p(isId(m.containerID) && isId(m.hostID) && isId(m.size) && m.size > 0, "bad id mapping");
  }
  p(!hasUserNs || (spec.linux.uidMappings ?? []).length > 0, "a user namespace needs uidMappings");
  p(!hasUserNs || (spec.linux.gidMappings ?? []).length > 0, "a user namespace needs gidMappings");
  p(
    hasUserNs || (spec.linux.uidMappings === undefined && spec.linux.gidMappings === undefined),
    "id mappings need a user namespace",
  );
  p(spec.hostname === undefined || types.includes("uts"), "hostname needs a uts namespace");
  return problems;
}
