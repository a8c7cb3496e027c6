/** `shoal doctor`'s engine: runs every probe and decides which run path this user gets. */
import { findTool, type LoadedConfig } from "../config/load.ts";
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
import { idmapToolCheck, privilegesCheck, subidCheck } from "./ids.ts";
import { helperCheck, securityCheck } from "./install.ts";
import {
  cgroupCheck,
  idmappedCheck,
  kernelCheck,
  overlayCheck,
  squashfsKernelCheck,
  usernsCheck,
  usernsLimitsCheck,
  usernsSysctls,
} from "./kernel.ts";
import type { Check, DoctorReport } from "./report.ts";
import { chooseRunPath } from "./runpath.ts";
import { fuseCheck, fusermountCheck, runcCheck, squashfuseCheck } from "./tools.ts";

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
  const isRoot = user.uid === 0;
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
  const [userns, overlay, runc, squashfs, fuse] = await Promise.all([
    usernsCheck(unshare, sysctls),
    overlayCheck(unshare, kernel),
    runcCheck(paths.runc),
    squashfsKernelCheck(kernel),
    fuseCheck(),
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
    securityCheck(loaded),
  ];
  const { runPath, reason } = chooseRunPath(checks, isRoot);
  return {
    user,
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
    runPath,
    runPathReason: reason,
    canRun: runPath !== null,
  };
}
