/**
 * Which way this user's containers run, from the checks: the helper path
 * (kernel squashfs, idmapped, under the setuid helper) when the site installed
 * it soundly, else the unprivileged path (squashfuse and overlay in a user
 * namespace), else none. Both end in rootless runc in a user namespace.
 */
import type { Check, RunPath } from "./report.ts";

/**
 * Checks each path needs to pass. The helper creates the container's user
 * namespace and maps it itself, so it needs neither unprivileged user
 * namespaces nor newuidmap; root maps ids itself. A missing subordinate range
 * blocks neither path: runs then map only the user's own id, and say so.
 */
function requirements(isRoot: boolean): Record<RunPath, string[]> {
  const common = ["config", "runc", ...(isRoot ? [] : ["privileges"])];
  return {
    helper: ["helper", "security", "squashfs", "idmapped-mounts", ...common],
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

/** The checks `path` needs (see requirements), for callers that probe only those. */
export function checksFor(path: RunPath, isRoot: boolean): string[] {
  return requirements(isRoot)[path];
}

/**
 * Checks that warn when something only the helper path uses is missing (the
 * helper, kernel squashfs, idmapped mounts, cap_sys_admin): that blocks it.
 */
const HELPER_PIECES = new Set(["helper", "squashfs", "idmapped-mounts", "privileges"]);

function blocks(check: Check | undefined): boolean {
  if (check === undefined) return true;
  return check.status === "fail" || (check.status === "warn" && HELPER_PIECES.has(check.id));
}

export interface RunPathChoice {
  runPath: RunPath | null;
  reason: string;
}

export function chooseRunPath(checks: Check[], isRoot: boolean): RunPathChoice {
  const needs = requirements(isRoot);
  const blockers = (path: RunPath) =>
    needs[path]
      .map((id) => ({ id, check: checks.find((c) => c.id === id) }))
      .filter(({ check }) => blocks(check))
      .map(({ id, check }) => check?.title ?? id);
  const helper = blockers("helper");
  const unprivileged = blockers("unprivileged");
  if (helper.length === 0) {
    return {
      runPath: "helper",
      reason: "the setuid helper is installed and passes the security checks: images are " +
        "mounted with kernel squashfs",
    };
  }
  if (unprivileged.length === 0) {
    return {
      runPath: "unprivileged",
      reason: "images are mounted with squashfuse in a user namespace (the helper path is " +
        `blocked by: ${helper.join(", ")})`,
    };
  }
  return {
    runPath: null,
    reason: `the helper path is blocked by: ${helper.join(", ")}; ` +
      `the unprivileged path is blocked by: ${unprivileged.join(", ")}`,
  };
}
