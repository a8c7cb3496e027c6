/**
 * Which way one run goes: path A (the setuid helper: kernel squashfs, idmapped)
 * or path B (squashfuse and overlay in a user namespace). The decision is
 * doctor's (mod/doctor/runpath.ts), fed with the checks that cost no child
 * process, plus one rule doctor cannot know: whether the helper may mount this
 * particular image (root's images always; the user's own only where the site
 * sets helper.kernelMountUserImages, since the kernel's squashfs parser then
 * reads data the user wrote).
 */
import { join } from "../path.ts";
import { expand, type LoadedConfig } from "../config/load.ts";
import { getpwuid } from "../sys/user.ts";
import { ShoalError } from "../errors.ts";
import { kernelVersion } from "../sys/kernel.ts";
import { idmapToolCheck, privilegesCheck } from "../doctor/ids.ts";
import { helperCheck, securityCheck } from "../doctor/install.ts";
import {
  idmappedCheck,
  kernelCheck,
  type KernelFacts,
  squashfsKernelCheck,
  usernsLimitsCheck,
  usernsSysctls,
} from "../doctor/kernel.ts";
import type { Check, RunPath } from "../doctor/report.ts";
import { chooseRunPath } from "../doctor/runpath.ts";
import { fuseCheck, squashfuseCheck } from "../doctor/tools.ts";

export interface PathChoice {
  path: RunPath;
  /** Why, for `--debug`. */
  reason: string;
}

/** Who owns the image file and whether others may write it. */
export interface ImageFileInfo {
  path: string;
  uid: number;
  mode: number;
}

/**
 * Whether the site lets the helper kernel-mount this image (see the header),
 * `repositories` being where the helper accepts images (helperRepositories).
 */
export function helperMayMount(
  image: ImageFileInfo,
  uid: number,
  kernelMountUserImages: boolean,
  repositories: string[],
): boolean {
  if ((image.mode & 0o022) !== 0) return false;
  if (!repositories.some((r) => image.path.startsWith(r.endsWith("/") ? r : `${r}/`))) return false;
  return image.uid === 0 || (image.uid === uid && kernelMountUserImages);
}

/**
 * The repositories the helper takes images from, as the helper itself sees
 * them: the centralized one, and the local one from the site config expanded
 * with the user database's home and name (the helper trusts no environment, so
 * an $XDG_DATA_HOME repository is not among them), default
 * `$HOME/.local/share/shoal`; resolved through symlinks as the helper does.
 */
export function helperRepositories(loaded: LoadedConfig, uid: number): string[] {
  const user = getpwuid(uid);
  const repos: string[] = [];
  if (loaded.config.repositories.centralized) repos.push(loaded.config.repositories.centralized);
  if (user !== null) {
    const local = loaded.config.repositories.local;
    repos.push(
      local === undefined
        ? join(user.home, ".local", "share", "shoal")
        : expand(local, { home: user.home, user: user.name }, loaded.layout.configFile, "local"),
    );
  }
  return repos.map((r) => {
    try {
      return Deno.realPathSync(r);
    } catch {
      return r;
    }
  });
}

/** The checks of the helper path (and of both), from probes that start no program. */
function helperPathChecks(
  loaded: LoadedConfig,
  uid: number,
  image: ImageFileInfo,
  k: KernelFacts,
): Check[] {
  const paths = loaded.paths;
  const helper = helperCheck(loaded);
  return [
    { id: "config", title: "configuration", status: "ok", detail: "loaded" },
    paths.runc === undefined
      ? { id: "runc", title: "runc", status: "fail", detail: "not found", fix: "install runc" }
      : { id: "runc", title: "runc", status: "ok", detail: paths.runc },
    helper.status === "ok" &&
      !helperMayMount(
        image,
        uid,
        loaded.config.helper.kernelMountUserImages,
        helperRepositories(loaded, uid),
      )
      ? {
        ...helper,
        status: "warn",
        detail: `the site does not let it mount this image (${image.path}): it mounts root's ` +
          "images, yours only where the site allows, and only from the repositories it knows",
        fix: "an admin sets helper.kernelMountUserImages and repositories.local, or pulls the " +
          "image into the centralized repository",
      }
      : helper,
    securityCheck(loaded),
    squashfsKernelCheck(k),
    idmappedCheck(k),
    privilegesCheck(uid),
  ];
}

/** The checks only the unprivileged path needs. */
function unprivilegedPathChecks(loaded: LoadedConfig, k: KernelFacts): Check[] {
  const paths = loaded.paths;
  return [
    { ...kernelCheck(k), id: "overlay-userns", title: "overlay in a user namespace" },
    { ...usernsLimitsCheck(usernsSysctls()), id: "userns", title: "unprivileged user namespaces" },
    fuseCheck(),
    squashfuseCheck(paths.squashfuse),
    idmapToolCheck("newuidmap", paths.newuidmap),
    idmapToolCheck("newgidmap", paths.newgidmap),
  ];
}

function kernel(): KernelFacts {
  const release = Deno.osRelease();
  return { release, version: kernelVersion(release) };
}

/**
 * The path for this run, or one error naming what is missing: the first
 * blocker of path B (what a user without the helper must get fixed) with its
 * fix, or installing the helper. Path B's checks are made only when the
 * helper path is blocked: a run's start is measured in milliseconds.
 */
export function choosePath(loaded: LoadedConfig, uid: number, image: ImageFileInfo): PathChoice {
  const k = kernel();
  const helperChecks = helperPathChecks(loaded, uid, image, k);
  const first = chooseRunPath(helperChecks, uid === 0);
  if (first.runPath === "helper") return { path: "helper", reason: first.reason };
  const checks = [...helperChecks, ...unprivilegedPathChecks(loaded, k)];
  const { runPath, reason } = chooseRunPath(checks, uid === 0);
  if (runPath !== null) return { path: runPath, reason };
  throw noPathError(checks, reason);
}

/** The one-line error when neither path can run (exported for its wording's tests). */
export function noPathError(checks: Check[], reason: string): ShoalError {
  const blocker = checks.find((c) =>
    ["userns", "fuse", "squashfuse", "overlay-userns", "newuidmap", "newgidmap", "runc"]
      .includes(c.id) && c.status === "fail"
  );
  if (blocker === undefined) {
    return new ShoalError(`cannot run containers here: ${reason}`, {
      hint: "`shoal doctor` says what to fix",
    });
  }
  const what = blocker.id === "userns"
    ? `unprivileged user namespaces are disabled (${blocker.detail})`
    : `${blocker.title}: ${blocker.detail}`;
  return new ShoalError(what, {
    hint: `ask your admin to install shoal-mount${blocker.fix ? ` or to run: ${blocker.fix}` : ""}`,
  });
}
