/**
 * Whether a run goes, and which way: the helper path (kernel squashfs,
 * idmapped, under the setuid helper) when the site installed it soundly and
 * it may mount the image, else the unprivileged path (squashfuse and overlay
 * in a user namespace), else none. Both end in rootless runc in a user
 * namespace. `shoal run` decides by this rule (runtime/choose.ts) and `shoal
 * doctor` predicts with it, each giving it the checks it made.
 */
import type { SubidRange } from "../sys/subid.ts";
import type { Check, RunPath } from "./check.ts";

/**
 * What stops a run whichever path it would take: the configuration, the
 * installation's security checks, the run directory, and the identity the
 * run asks for.
 */
export const EVERY_RUN = ["config", "security", "rundir", "identity"];

/**
 * Checks each path needs to pass. The helper creates the container's user
 * namespace and maps it itself, so it needs neither unprivileged user
 * namespaces nor newuidmap; root maps ids itself.
 */
function requirements(isRoot: boolean): Record<RunPath, string[]> {
  const common = [...EVERY_RUN, "runc", ...(isRoot ? [] : ["privileges"])];
  return {
    helper: ["helper", "image", "tmpfs", "squashfs", "idmapped-mounts", ...common],
    unprivileged: [
      "overlay-userns",
      "fuse",
      "squashfuse",
      "userns",
      ...common,
      ...(isRoot ? [] : ["newuidmap", "newgidmap"]),
    ],
  };
}

/**
 * Checks that warn when something only the helper path uses is missing or
 * refused (the helper, this image, the writable layer's size, kernel
 * squashfs, idmapped mounts, cap_sys_admin): that blocks the helper path alone.
 */
const HELPER_PIECES = new Set([
  "helper",
  "image",
  "tmpfs",
  "squashfs",
  "idmapped-mounts",
  "privileges",
]);

function blocks(check: Check | undefined, path: RunPath): boolean {
  if (check === undefined) return true;
  return check.status === "fail" ||
    (check.status === "warn" && path === "helper" && HELPER_PIECES.has(check.id));
}

export interface RunPathChoice {
  runPath: RunPath | null;
  /** Why that path, or why none, naming what blocked the other. */
  reason: string;
  /**
   * With no path: what to fix, first first (what stops every run, else what
   * blocks the unprivileged path, the one that needs no site install). On
   * the unprivileged path: what keeps the helper from taking the run.
   */
  blockers: Check[];
}

const named = (checks: Check[]) => checks.map((c) => `${c.title}: ${c.detail}`).join("; ");

export function chooseRunPath(checks: Check[], isRoot: boolean): RunPathChoice {
  const needs = requirements(isRoot);
  const blockers = (path: RunPath) =>
    needs[path].flatMap((id) => {
      const check = checks.find((c) => c.id === id);
      if (!blocks(check, path)) return [];
      return [check ?? { id, title: id, status: "fail" as const, detail: "not checked" }];
    });
  const helper = blockers("helper");
  const unprivileged = blockers("unprivileged");
  const everyRun = unprivileged.filter((c) => EVERY_RUN.includes(c.id));
  if (everyRun.length > 0) {
    return { runPath: null, reason: named(everyRun), blockers: everyRun };
  }
  if (helper.length === 0) {
    return {
      runPath: "helper",
      reason: "the setuid helper may mount the image: it is mounted with kernel squashfs",
      blockers: [],
    };
  }
  if (unprivileged.length === 0) {
    return {
      runPath: "unprivileged",
      reason: "the image is mounted with squashfuse in a user namespace; the helper path is " +
        `blocked by: ${named(helper)}`,
      blockers: helper,
    };
  }
  return {
    runPath: null,
    reason: `the helper path is blocked by: ${named(helper)}; ` +
      `the unprivileged path is blocked by: ${named(unprivileged)}`,
    blockers: unprivileged,
  };
}

/** The identity one run asks for: the user's own ids, or root inside (`--root`). */
export interface IdentityRequest {
  root: boolean;
  user: { uid: number; name: string; subuid: SubidRange[]; subgid: SubidRange[] };
}

/**
 * runc 1.1 becomes root of the container's user namespace to set it up, and
 * with the default identity the user's own id maps to itself: without a
 * subordinate range no id is left for root. `--root` maps root to the user.
 */
export function identityCheck({ root, user }: IdentityRequest): Check {
  const base = { id: "identity", title: root ? "with --root" : "as yourself" };
  if (root || user.uid === 0) {
    return { ...base, status: "ok", detail: "root inside is your own id outside" };
  }
  const missing = [
    ...(user.subuid.length === 0 ? ["/etc/subuid"] : []),
    ...(user.subgid.length === 0 ? ["/etc/subgid"] : []),
  ];
  if (missing.length === 0) {
    return { ...base, status: "ok", detail: "your own ids, and others from your ranges" };
  }
  return {
    ...base,
    status: "fail",
    detail: `without a ${missing.join(" and ")} range for ${user.name}, only --root runs ` +
      "(your own id is the only one the container can map)",
    fix: "use --root, or ask your admin for a subordinate id range",
  };
}
