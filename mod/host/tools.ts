/** Probes of the programs and devices a run uses: runc, squashfuse, FUSE. */
import { failure, output } from "../sys/process.ts";
import type { Check } from "./check.ts";

export async function runcCheck(path: string | undefined): Promise<Check> {
  const base = { id: "runc", title: "runc" };
  const fix = "apt-get install runc (dnf install runc), or set runtime.runc in the site config";
  if (path === undefined) return { ...base, status: "fail", detail: "not found", fix };
  const r = await output(path, ["--version"]);
  const version = r.stdout.split("\n")[0]?.trim() ?? "";
  if (r.code !== 0 || version === "") {
    return { ...base, status: "fail", detail: `${path} --version failed: ${failure(r)}`, fix };
  }
  return { ...base, status: "ok", detail: `${path}: ${version}` };
}

/**
 * `path` is the site's choice, else squashfuse_ll, else squashfuse: the
 * low-level one is several times faster (docs/design/architecture.md).
 */
export function squashfuseCheck(path: string | undefined): Check {
  const base = { id: "squashfuse", title: "squashfuse" };
  if (path === undefined) {
    return {
      ...base,
      status: "fail",
      detail: "neither squashfuse_ll nor squashfuse found: the unprivileged path needs one",
      fix: "apt-get install squashfuse (dnf install squashfuse)",
    };
  }
  if (!path.endsWith("squashfuse_ll")) {
    return {
      ...base,
      status: "warn",
      detail: `${path}: the high-level squashfuse reads images several times slower`,
      fix: "install a squashfuse package that ships squashfuse_ll (Debian's does)",
    };
  }
  return { ...base, status: "ok", detail: path };
}

const FUSE_RULE = 'KERNEL=="fuse", MODE="0666"';

/** /dev/fuse, opened read-write as squashfuse opens it (sync: every run's start checks it). */
export function fuseCheck(device = "/dev/fuse"): Check {
  const base = { id: "fuse", title: "FUSE device" };
  try {
    const f = Deno.openSync(device, { read: true, write: true });
    f.close();
    return { ...base, status: "ok", detail: `${device} is usable` };
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      return {
        ...base,
        status: "fail",
        detail: `${device} does not exist: squashfuse cannot mount images`,
        fix: "modprobe fuse (and add fuse to /etc/modules-load.d/ to load it at boot)",
      };
    }
    if (err instanceof Deno.errors.PermissionDenied) {
      const mode = Deno.statSync(device).mode ?? 0;
      return {
        ...base,
        status: "fail",
        detail: `${device} (mode ${(mode & 0o7777).toString(8).padStart(4, "0")}) ` +
          "is not read-writable by this user: squashfuse cannot mount images",
        fix: `chmod 0666 ${device}, and keep it so with the udev rule ` +
          `'${FUSE_RULE}' in /etc/udev/rules.d/99-fuse.rules`,
      };
    }
    return {
      ...base,
      status: "fail",
      detail: `${device}: ${(err as Error).message}`,
      fix: "modprobe fuse",
    };
  }
}

export function fusermountCheck(path: string | undefined): Check {
  const base = { id: "fusermount", title: "fusermount3" };
  if (path === undefined) {
    return {
      ...base,
      status: "warn",
      detail: "not found: FUSE mounts outside a user namespace cannot be unmounted by users",
      fix: "apt-get install fuse3 (dnf install fuse3)",
    };
  }
  return { ...base, status: "ok", detail: path };
}
