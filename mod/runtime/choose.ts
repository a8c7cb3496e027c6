/**
 * Which way one run goes: path A (the setuid helper: kernel squashfs, idmapped)
 * or path B (squashfuse and overlay in a user namespace), or none and why. The
 * rule is host/runpath.ts's, which doctor predicts with, fed here with the
 * checks that cost no child process, plus what only a run knows: whether the
 * helper will mount this image (root's images always; the user's own only
 * where the site sets helper.kernelMountUserImages, since the kernel's
 * squashfs parser then reads data the user wrote), the size of the writable
 * layer asked for, and the identity (own ids or --root).
 */
import { storeImageDigest } from "../image/cluster/layout.ts";
import { configuredStore, storeProblem } from "../image/cluster/open.ts";
import { join } from "../path.ts";
import { expand, type LoadedConfig } from "../config/load.ts";
import { getpwuid } from "../sys/user.ts";
import { ShoalError } from "../errors.ts";
import { defineLazy } from "../lazy.ts";
import { kernelVersion } from "../sys/kernel.ts";
import { rootOnlyProblems } from "../config/security.ts";
import { idmapToolCheck, privilegesCheck } from "../host/ids.ts";
import { helperCheck, securityCheck } from "../host/install.ts";
import {
  idmappedCheck,
  kernelCheck,
  type KernelFacts,
  squashfsKernelCheck,
  usernsLimitsCheck,
  usernsSysctls,
} from "../host/kernel.ts";
import type { Check, RunPath } from "../host/check.ts";
import { chooseRunPath, EVERY_RUN, identityCheck, type IdentityRequest } from "../host/runpath.ts";
import { runDirCheck } from "../host/rundir.ts";
import { fuseCheck, squashfuseCheck } from "../host/tools.ts";

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
  local?: string;
  /** Why the helper would refuse the walk to `local` (localRepositoryRefusal). */
  localRefused?: string;
  /** The cluster store and its owner's uid; `refused` why the helper will not trust it. */
  store?: { root: string; owner: number; refused?: string };
}

/**
 * Why the helper will not mount this image (helper/main.c's header, "Image"),
 * or undefined when it will: the path is literally
 * REPO/images/<algorithm>-<hex>.sqsh; in the centralized repository the file
 * is root's, on a path only root can change; in the local one the user's,
 * and only where the site sets helper.kernelMountUserImages; never writable
 * by group or others.
 */
export function imageRefusal(
  image: ImageFileInfo,
  uid: number,
  kernelMountUserImages: boolean,
  repositories: HelperRepositories,
): string | undefined {
  const inRepository = (repo: string | undefined) =>
    repo !== undefined && canonical(image.path) && image.path.startsWith(`${repo}/images/`) &&
    STORED_IMAGE.test(image.path.slice(repo.length + "/images/".length));
  if ((image.mode & 0o022) !== 0) return `${image.path} is writable by group or others`;
  const { centralized, local, store } = repositories;
  if (store !== undefined && storeImageDigest(image.path, store.root) !== undefined) {
    if (store.refused !== undefined) return store.refused;
    return image.uid === store.owner ? undefined : `${image.path} is not the store owner's`;
  }
  if (inRepository(centralized)) {
    const [problem] = rootOnlyProblems(`${centralized}/images`);
    if (problem !== undefined) return `the centralized repository: ${problem.message}`;
    return image.uid === 0 ? undefined : `${image.path} is not root's`;
  }
  if (inRepository(local)) {
    if (!kernelMountUserImages) {
      return "helper.kernelMountUserImages is false: the helper mounts root's images only, " +
        "so yours are mounted with squashfuse";
    }
    if (repositories.localRefused !== undefined) return repositories.localRefused;
    return image.uid === uid ? undefined : `${image.path} is not yours`;
  }
  const where = image.path.replace(/\/images\/[^/]*$/, "");
  return `${where} is not a repository the helper takes images from (` +
    [centralized, local].filter((r) => r !== undefined).join(", ") + ")";
}

/** Whether the helper will mount this image (imageRefusal finds none). */
export function helperMayMount(
  image: ImageFileInfo,
  uid: number,
  kernelMountUserImages: boolean,
  repositories: HelperRepositories,
): boolean {
  return imageRefusal(image, uid, kernelMountUserImages, repositories) === undefined;
}

/**
 * Why the helper's walk to `<local>/images` fails, or undefined where it
 * passes: no symlink, every directory root's or the user's and not writable
 * by group or others unless root's and sticky (like /tmp). lstat only:
 * nothing is resolved.
 */
function localRepositoryRefusal(local: string, uid: number): string | undefined {
  if (!canonical(local)) return `${local} is not written as the helper compares paths`;
  let path = "";
  for (const part of [...local.slice(1).split("/"), "images"]) {
    if (part === "") continue;
    path += `/${part}`;
    let st: Deno.FileInfo;
    try {
      st = Deno.lstatSync(path);
    } catch (err) {
      return `the helper cannot walk to ${path}: ${(err as Error).message}`;
    }
    const mode = st.mode ?? 0;
    if (!st.isDirectory) return `${path} is not a directory (the helper follows no symlink)`;
    if (st.uid !== 0 && st.uid !== uid) return `${path} belongs to another user`;
    if ((mode & 0o022) !== 0 && !((mode & 0o1000) !== 0 && st.uid === 0)) {
      return `${path} may be written by others`;
    }
  }
  return undefined;
}

/** Whether the helper's walk to `<local>/images` passes (see localRepositoryRefusal). */
export function localRepositoryWalkable(local: string, uid: number): boolean {
  return localRepositoryRefusal(local, uid) === undefined;
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
    repos.local = local;
    // Walked only when asked: an image in the centralized repository or the store needs no walk.
    defineLazy(repos, "localRefused", () => localRepositoryRefusal(local, uid));
  }
  if (loaded.config.store !== undefined) repos.store = storeAsHelperSees(loaded);
  return repos;
}

/**
 * The cluster store as the helper judges it (helper/store.c): its owner and
 * why it refuses it, found when first asked (a run of another repository's
 * image needs neither).
 */
function storeAsHelperSees(loaded: LoadedConfig): HelperRepositories["store"] {
  const root = loaded.config.store!.path;
  const judged = (): { owner: number; refused?: string } => {
    try {
      const store = configuredStore(loaded)!;
      const refused = storeProblem(store);
      return { owner: store.owner.uid, ...(refused !== undefined && { refused }) };
    } catch (err) {
      return { owner: -1, refused: (err as Error).message };
    }
  };
  let verdict: ReturnType<typeof judged> | undefined;
  return {
    root,
    get owner() {
      return (verdict ??= judged()).owner;
    },
    get refused() {
      return (verdict ??= judged()).refused;
    },
  };
}

/** What one run asks for that decides its path: the identity and the writable layer's size. */
export interface RunAsk {
  root: boolean;
  /** `--writable-tmpfs-size` in bytes. */
  tmpfsSize?: number;
}

/** Whether the helper will mount this image for `uid` (imageRefusal), as a check. */
export function imageCheck(loaded: LoadedConfig, uid: number, image: ImageFileInfo): Check {
  const base = { id: "image", title: "the helper mounts the image" };
  const refused = imageRefusal(
    image,
    uid,
    loaded.config.helper.kernelMountUserImages,
    helperRepositories(loaded, uid),
  );
  if (refused === undefined) return { ...base, status: "ok", detail: image.path };
  const config = loaded.file ?? loaded.layout.configFile;
  const userImage = refused.startsWith("helper.kernelMountUserImages");
  return {
    ...base,
    status: "warn",
    detail: refused,
    fix: userImage
      ? `an admin may set "helper": {"kernelMountUserImages": true} in ${config} (the kernel ` +
        "then parses images users wrote)" +
        (loaded.paths.centralizedRepository === undefined
          ? ""
          : ", or pull the image into the centralized repository") +
        (loaded.config.store === undefined
          ? ", or set up a cluster store, whose images the helper mounts for everyone"
          : "")
      : "an admin keeps the repository where only root (the centralized one) or you (your own) " +
        `can change it, as named in ${config}`,
  };
}

const UNITS: Record<string, number> = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };

/** A helper.writableTmpfsSize in bytes, as the helper reads it (tmpfs_bytes, helper/config.c). */
function tmpfsBytes(size: string): number {
  const [, digits, unit] = size.match(/^([0-9]+)([kmg%]?)$/)!;
  if (unit !== "%") return Number(digits) * UNITS[unit!]!;
  const total = Deno.readTextFileSync("/proc/meminfo").match(/^MemTotal:\s+(\d+) kB$/m);
  return Math.floor(Number(total?.[1] ?? 0) * 1024 / 100) * Number(digits);
}

/**
 * Whether the helper takes the writable layer's size asked for: at most the
 * site's helper.writableTmpfsSize (it is given whole KiB).
 */
export function tmpfsCheck(loaded: LoadedConfig, size: number | undefined): Check {
  const base = { id: "tmpfs", title: "writable layer size" };
  const limit = loaded.config.helper.writableTmpfsSize;
  if (size === undefined || Math.ceil(size / 1024) * 1024 <= tmpfsBytes(limit)) {
    return { ...base, status: "ok", detail: `up to ${limit} through the helper` };
  }
  return {
    ...base,
    status: "warn",
    detail: `--writable-tmpfs-size ${Math.ceil(size / 1024)}k is more than the helper's ` +
      `writable layers may hold (helper.writableTmpfsSize ${limit})`,
    fix: "ask for less, or ask your admin to raise helper.writableTmpfsSize",
  };
}

/**
 * What stops every run, and the helper path's checks, from probes that
 * start no program: what `choosePath` decides by before it needs path B's.
 */
function helperPathChecks(
  loaded: LoadedConfig,
  who: IdentityRequest["user"],
  image: ImageFileInfo,
  ask: RunAsk,
  k: KernelFacts,
): Check[] {
  const paths = loaded.paths;
  return [
    { id: "config", title: "configuration", status: "ok", detail: "loaded" },
    securityCheck(loaded, who),
    runDirCheck(loaded.runBase),
    identityCheck({ root: ask.root, user: who }),
    paths.runc === undefined
      ? { id: "runc", title: "runc", status: "fail", detail: "not found", fix: "install runc" }
      : { id: "runc", title: "runc", status: "ok", detail: paths.runc },
    helperCheck(loaded),
    imageCheck(loaded, who.uid, image),
    tmpfsCheck(loaded, ask.tmpfsSize),
    squashfsKernelCheck(k),
    idmappedCheck(k),
    privilegesCheck(who.uid),
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
 * The path for this run, or one error naming what is missing: what stops
 * every run (the run directory, the identity), else the first blocker of path
 * B (what a user without the helper must get fixed) with its fix. Path B's
 * checks are made only when the helper path is blocked: a run's start is
 * measured in milliseconds.
 */
export function choosePath(
  loaded: LoadedConfig,
  who: IdentityRequest["user"],
  image: ImageFileInfo,
  ask: RunAsk,
): PathChoice {
  const k = kernel();
  const isRoot = who.uid === 0;
  const helperChecks = helperPathChecks(loaded, who, image, ask, k);
  const first = chooseRunPath(helperChecks, isRoot);
  if (first.runPath === "helper") return { path: "helper", reason: first.reason };
  const checks = [...helperChecks, ...unprivilegedPathChecks(loaded, k)];
  const { runPath, reason, blockers } = chooseRunPath(checks, isRoot);
  if (runPath !== null) return { path: runPath, reason };
  const [stop] = blockers;
  if (stop !== undefined && EVERY_RUN.includes(stop.id)) {
    throw new ShoalError(stop.detail, stop.fix === undefined ? {} : { hint: stop.fix });
  }
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
  // Installed but refusing this run (the image, the layer's size): installing it is no fix.
  const helperInstalled = checks.some((c) => c.id === "helper" && c.status === "ok");
  const fix = blocker.fix ? `${helperInstalled ? "" : " or"} to run: ${blocker.fix}` : "";
  return new ShoalError(what, {
    hint: `ask your admin${helperInstalled ? "" : " to install shoal-mount"}${fix}`,
  });
}
