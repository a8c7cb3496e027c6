/** One finding about this host or installation, as `shoal doctor` shows it and `shoal run` decides by it. */
export type CheckStatus = "ok" | "warn" | "fail";

export interface Check {
  /** Stable identifier for scripts: "userns", "fuse", ... */
  id: string;
  title: string;
  status: CheckStatus;
  /** What was found, one line. */
  detail: string;
  /** What fixes a failed or warned item (who runs it is said in it where it is not the admin). */
  fix?: string;
}

/** The two ways a container runs: kernel squashfs through the helper, or squashfuse. */
export type RunPath = "helper" | "unprivileged";
