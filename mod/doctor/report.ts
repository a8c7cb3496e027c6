/** What `shoal doctor` finds: plain data, printed by the CLI as a table or JSON. */
import type { SubidRange } from "../sys/subid.ts";

export type CheckStatus = "ok" | "warn" | "fail";

export interface Check {
  /** Stable identifier for scripts: "userns", "fuse", ... */
  id: string;
  title: string;
  status: CheckStatus;
  /** What was found, one line. */
  detail: string;
  /** What an admin runs to fix a failed or warned item. */
  fix?: string;
}

export type RunPath = "helper" | "unprivileged";

export interface DoctorReport {
  user: {
    name: string;
    uid: number;
    gid: number;
    groups: { gid: number; name: string | null }[];
    home: string;
  };
  subuid: SubidRange[];
  subgid: SubidRange[];
  checks: Check[];
  /** The way this user's containers run: kernel squashfs through the helper, or squashfuse. */
  runPath: RunPath | null;
  /** Why that path (or why none). */
  runPathReason: string;
  canRun: boolean;
}
