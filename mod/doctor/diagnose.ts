/**
 * `shoal doctor`'s engine: runs every probe, then decides what `shoal run`
 * would do for this user, as yourself and with --root, from each repository,
 * by the rule and the per-run checks the run itself uses (host/runpath.ts,
 * runtime/choose.ts).
 */
import { findTool, type LoadedConfig } from "../config/load.ts";
import { isUserInstall } from "../config/security.ts";
import { join } from "../path.ts";
import { imageCheck, type ImageFileInfo, tmpfsCheck } from "../runtime/choose.ts";
import { configuredStore } from "../image/cluster/open.ts";
import { kernelVersion } from "../sys/kernel.ts";
import {
  rangesOf,
  readSubidFile,
  SUBGID_FILE,
  type SubidEntry,
  SUBUID_FILE,
} from "../sys/subid.ts";
import { credentials, getgrgid, getpwuid } from "../sys/user.ts";
import type { ConfigProblem } from "./config.ts";
import { configCheck } from "./config.ts";
import type { Check } from "../host/check.ts";
import { idmapToolCheck, privilegesCheck, subidCheck } from "../host/ids.ts";
import { execShimCheck, helperCheck, securityCheck } from "../host/install.ts";
import {
  cgroupCheck,
  idmappedCheck,
  kernelCheck,
  overlayCheck,
  squashfsKernelCheck,
  usernsCheck,
  usernsLimitsCheck,
  usernsSysctls,
} from "../host/kernel.ts";
import { runDirCheck } from "../host/rundir.ts";
import { chooseRunPath, identityCheck } from "../host/runpath.ts";
import { fuseCheck, fusermountCheck, runcCheck, squashfuseCheck } from "../host/tools.ts";
import type { DoctorReport, RunVerdict } from "./report.ts";
import { gpuReport } from "./gpu.ts";
import { hpcReport } from "./hpc.ts";

export interface DiagnoseOptions {
  /** Why the configuration did not load as it is (see loadForDoctor). */
  configProblem?: ConfigProblem;
}

/** A subid file's entries; an unreadable file is a failed check, not a crash. */
async function subidEntries(file: string): Promise<{ entries: SubidEntry[]; error?: string }> {
  try {
    return { entries: await readSubidFile(file) };
  } catch (err) {
    return { entries: [], error: `cannot read ${file}: ${(err as Error).message}` };
  }
}

function who(): DoctorReport["user"] {
  const cred = credentials();
  const entry = getpwuid(cred.uid);
  const gids = [...new Set([cred.gid, ...cred.groups])];
  return {
    name: entry?.name ?? String(cred.uid),
    uid: cred.uid,
    gid: cred.gid,
    groups: gids.map((gid) => ({ gid, name: getgrgid(gid)?.name ?? null })),
    home: entry?.home ?? Deno.env.get("HOME") ?? "",
  };
}

export async function diagnose(
  loaded: LoadedConfig,
  options: DiagnoseOptions = {},
): Promise<DoctorReport> {
  const user = who();
  const release = Deno.osRelease();
  const kernel = { release, version: kernelVersion(release) };
  const sysctls = await usernsSysctls();
  const unshare = findTool(["unshare"], Deno.env.get("PATH"));
  const paths = loaded.paths;

  const [subuidFile, subgidFile] = await Promise.all([
    subidEntries(SUBUID_FILE),
    subidEntries(SUBGID_FILE),
  ]);
  const all = { subuid: subuidFile.entries, subgid: subgidFile.entries };
  const subuid = rangesOf(all.subuid, user.name, user.uid);
  const subgid = rangesOf(all.subgid, user.name, user.uid);
  const subidFileCheck = (kind: "subuid" | "subgid", error: string | undefined): Check =>
    error === undefined ? subidCheck(kind, user, kind === "subuid" ? subuid : subgid, all) : {
      id: kind,
      title: `/etc/${kind} range`,
      status: "fail",
      detail: error,
      fix: `chmod 0644 /etc/${kind}`,
    };

  // The probes that start programs run side by side.
  const [userns, overlay, runc, squashfs, fuse, gpu] = await Promise.all([
    usernsCheck(unshare, sysctls),
    overlayCheck(unshare, kernel),
    runcCheck(paths.runc),
    squashfsKernelCheck(kernel),
    fuseCheck(),
    gpuReport("/", loaded.config.cdiSpecDirs, loaded.config.securityChecks, Deno.env.toObject()),
  ]);

  const checks: Check[] = [
    configCheck({ loaded, problem: options.configProblem }),
    kernelCheck(kernel),
    userns,
    usernsLimitsCheck(sysctls),
    subidFileCheck("subuid", subuidFile.error),
    subidFileCheck("subgid", subgidFile.error),
    idmapToolCheck("newuidmap", paths.newuidmap),
    idmapToolCheck("newgidmap", paths.newgidmap),
    privilegesCheck(user.uid),
    runc,
    overlay,
    idmappedCheck(kernel),
    squashfs,
    squashfuseCheck(paths.squashfuse),
    fuse,
    fusermountCheck(paths.fusermount),
    cgroupCheck(),
    helperCheck(loaded),
    execShimCheck(loaded),
    securityCheck(loaded, user),
    runDirCheck(loaded.runBase),
  ];
  const runs = verdicts(loaded, checks, { ...user, subuid, subgid });
  const plain = runs[0]!;
  return {
    user,
    install: {
      kind: loaded.layout.kind === "checkout"
        ? "checkout"
        : isUserInstall(loaded)
        ? "user"
        : "site",
      prefix: loaded.layout.prefix,
    },
    subuid,
    subgid,
    // One key order in the JSON, whichever probe built the check.
    checks: checks.map(({ id, title, status, detail, fix }) => ({
      id,
      title,
      status,
      detail,
      fix,
    })),
    runs,
    runPath: plain.runPath,
    runPathReason: plain.reason,
    canRun: plain.runPath !== null,
    gpu,
    hpc: hpcReport(loaded, Deno.env.toObject()),
  };
}

/** An image as a repository would store it: the helper judges it by where it is and whose. */
function storedImage(repository: string, uid: number): ImageFileInfo {
  let real = repository;
  try {
    real = Deno.realPathSync(repository);
  } catch { /* not made yet: a pull makes it where it is named */ }
  return { path: join(real, "images", `sha256-${"0".repeat(64)}.sqsh`), uid, mode: 0o100644 };
}

/** An image of the cluster store, its owner's, as the converter leaves it. */
function storeImage(loaded: LoadedConfig): ImageFileInfo {
  const path = join(loaded.config.store!.path, "images", "sha256", "0".repeat(64), "image.sqsh");
  let owner = -1;
  try {
    owner = configuredStore(loaded)?.owner.uid ?? -1;
  } catch { /* no such account: the image check says why */ }
  return { path, uid: owner, mode: 0o100644 };
}

/**
 * What a run does as yourself and with --root, from your repository and the
 * centralized one where the site has it: the host's checks and the run's own
 * (identity, the image as the helper sees it, the default writable layer),
 * decided by the run's rule.
 */
function verdicts(
  loaded: LoadedConfig,
  checks: Check[],
  user: Parameters<typeof identityCheck>[0]["user"],
): RunVerdict[] {
  // Where a site has a cluster store, users' pulls put their images there: its verdict comes first.
  const repositories = [
    ...(loaded.config.store === undefined
      ? []
      : [{ repository: "store" as const, image: storeImage(loaded) }]),
    {
      repository: "local" as const,
      image: storedImage(loaded.paths.localRepository, user.uid),
    },
    ...(loaded.paths.centralizedRepository === undefined ? [] : [{
      repository: "centralized" as const,
      image: storedImage(loaded.paths.centralizedRepository, 0),
    }]),
  ];
  return (["self", "root"] as const).flatMap((identity) =>
    repositories.map(({ repository, image }) => {
      const { runPath, reason, blockers } = chooseRunPath([
        ...checks,
        identityCheck({ root: identity === "root", user }),
        imageCheck(loaded, user.uid, image),
        tmpfsCheck(loaded, undefined),
      ], user.uid === 0);
      const fixes = [...new Set(blockers.flatMap((c) => c.fix === undefined ? [] : [c.fix]))];
      return { identity, repository, runPath, reason, fixes };
    })
  );
}
