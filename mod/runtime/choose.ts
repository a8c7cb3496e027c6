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

/** An image file as repositories store it (imageFiles): the helper mounts no other name. */
const STORED_IMAGE = /^(sha256-[0-9a-f]{64}|sha512-[0-9a-f]{128})\.sqsh$/;

/** Absolute, with no ".", ".." or empty component: the helper compares paths as written. */
function canonical(path: string): boolean {
  return path.startsWith("/") &&
    (path === "/" || !path.slice(1).split("/").some((c) => c === "" || c === "." || c === ".."));
}

/** Where the helper takes images from, as it names them (helperRepositories). */
export interface HelperRepositories {
  centralized?: string;
  /** Absent when the helper would refuse the walk to it (see localRepositoryWalkable). */
  local?: string;
}

/**
 * Whether the helper will mount this image (helper/main.c's header, "Image"):
 * the path is literally REPO/images/<algorithm>-<hex>.sqsh; in the centralized
 * repository the file is root's, in the local one the user's and only where
 * the site sets helper.kernelMountUserImages; never writable by group or others.
 */
export function helperMayMount(
  image: ImageFileInfo,
  uid: number,
  kernelMountUserImages: boolean,
  repositories: HelperRepositories,
): boolean {
  const inRepository = (repo: string | undefined) =>
    repo !== undefined && canonical(image.path) && image.path.startsWith(`${repo}/images/`) &&
    STORED_IMAGE.test(image.path.slice(repo.length + "/images/".length));
  if ((image.mode & 0o022) !== 0) return false;
  if (inRepository(repositories.centralized)) return image.uid === 0;
  if (inRepository(repositories.local)) return kernelMountUserImages && image.uid === uid;
  return false;
}

/**
 * Whether the helper's walk to `<local>/images` passes: no symlink, every
 * directory root's or the user's and not writable by group or others unless
 * root's and sticky (like /tmp). lstat only: nothing is resolved.
 */
export function localRepositoryWalkable(local: string, uid: number): boolean {
  if (!canonical(local)) return false;
  let path = "";
  for (const part of [...local.slice(1).split("/"), "images"]) {
    if (part === "") continue;
    path += `/${part}`;
    let st: Deno.FileInfo;
    try {
      st = Deno.lstatSync(path);
    } catch {
      return false;
    }
    const mode = st.mode ?? 0;
    if (!st.isDirectory || (st.uid !== 0 && st.uid !== uid)) return false;
    if ((mode & 0o022) !== 0 && !((mode & 0o1000) !== 0 && st.uid === 0)) return false;
  }
  return true;
}

/**
 * The repositories the helper takes images from, named as the helper names
 * them: the centralized one as configured, and the local one from the site
 * config expanded with the user database's home and name (the helper trusts
 * no environment, so an $XDG_DATA_HOME repository is not among them), default
 * `$HOME/.local/share/shoal`. Nothing is resolved through symlinks: the
 * helper refuses a symlink on the local repository's path.
 */
export function helperRepositories(loaded: LoadedConfig, uid: number): HelperRepositories {
  const user = getpwuid(uid);
  const repos: HelperRepositories = {};
  if (loaded.config.repositories.centralized) {
    repos.centralized = loaded.config.repositories.centralized;
  }
  if (user !== null) {
    const configured = loaded.config.repositories.local;
    const local = configured === undefined
      ? join(user.home, ".local", "share", "shoal")
      : expand(configured, { home: user.home, user: user.name }, loaded.layout.configFile, "local");
    if (localRepositoryWalkable(local, uid)) repos.local = local;
  }
  return repos;
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
