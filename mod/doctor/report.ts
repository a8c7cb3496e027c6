/** What `shoal doctor` finds: plain data, printed by the CLI as a table or JSON. */
import type { Check, RunPath } from "../host/check.ts";
import type { SubidRange } from "../sys/subid.ts";
import type { GpuReport } from "./gpu.ts";
import type { HpcReport } from "./hpc.ts";

/** What `shoal run` does for this user with one identity, from one repository. */
export interface RunVerdict {
  /** "self": `shoal run IMAGE`; "root": `shoal run --root IMAGE`. */
  identity: "self" | "root";
  /**
   * "store": the images users pull on a site with a cluster store; "local": the user's own
   * images; "centralized": `--centralized-repository`.
   */
  repository: "store" | "local" | "centralized";
  runPath: RunPath | null;
  /** Why that path, naming what blocked the other; or why none. */
  reason: string;
  /** With no path: what fixes it, first first; on the unprivileged path: what would let the helper take it. */
  fixes: string[];
}

export interface DoctorReport {
  user: {
    name: string;
    uid: number;
    gid: number;
    groups: { gid: number; name: string | null }[];
    home: string;
  };
  /**
   * "site": installed by root for every user; "user": `install.sh --user`,
   * the user's own files and no helper; "checkout": run from a clone.
   */
  install: { kind: "site" | "user" | "checkout"; prefix: string };
  subuid: SubidRange[];
  subgid: SubidRange[];
  checks: Check[];
  /** Every identity and repository, the plain `shoal run IMAGE` first. */
  runs: RunVerdict[];
  /** The plain `shoal run IMAGE`'s path (runs[0]), or null when it fails. */
  runPath: RunPath | null;
  runPathReason: string;
  canRun: boolean;
  /** GPUs, their drivers and CDI specs; not part of canRun. */
  gpu: GpuReport;
  /** Slurm, PMI, the site's host MPI types, OCI hooks (hpc.ts). */
  hpc: HpcReport;
}
