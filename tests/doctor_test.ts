import { assert, assertEquals, assertMatch, assertStringIncludes } from "./support/assert.ts";
import { repoRoot, type Result, runCommand, shoal, shoalScript } from "./support/shoal.ts";
import { type RunSite, runSite, testImages } from "./support/run.ts";
import { runAs, TEST_USER_NOSUB, type TestUser, testUser } from "./support/users.ts";
import type { DoctorReport, RunVerdict } from "../mod/doctor/report.ts";
import type { Check } from "../mod/host/check.ts";
import { idmappedCheck, kernelCheck, usernsLimitsCheck } from "../mod/host/kernel.ts";
import { chooseRunPath } from "../mod/host/runpath.ts";

const CHECK_IDS = [
  "config",
  "kernel",
  "userns",
  "userns-limits",
  "subuid",
  "subgid",
  "newuidmap",
  "newgidmap",
  "privileges",
  "runc",
  "overlay-userns",
  "idmapped-mounts",
  "squashfs",
  "squashfuse",
  "fuse",
  "fusermount",
  "cgroup",
  "helper",
  "exec-shim",
  "security",
  "rundir",
];

/** The report of a `doctor --format json` run, checked for shape and exit code. */
function parseReport(r: Result): DoctorReport {
  const report = JSON.parse(r.stdout) as DoctorReport;
  assertEquals(r.code, report.canRun ? 0 : 1, r.stderr);
  assertEquals(report.canRun, report.runPath !== null);
  assertEquals(report.checks.map((c) => c.id), CHECK_IDS);
  for (const c of report.checks) {
    assert(["ok", "warn", "fail"].includes(c.status), `${c.id}: ${c.status}`);
    assert(c.title !== "" && c.detail !== "", c.id);
    if (c.status !== "ok") assert(c.fix !== undefined && c.fix !== "", `${c.id} has no fix`);
  }
  assert(report.runPathReason !== "");
  const [plain] = report.runs;
  assertEquals([plain?.identity, plain?.repository], ["self", "local"]);
  assertEquals([plain?.runPath, plain?.reason], [report.runPath, report.runPathReason]);
  for (const run of report.runs) {
    if (run.runPath === null) assert(run.fixes.length > 0, `${run.identity}: no fix`);
  }
  return report;
}

function verdict(
  report: DoctorReport,
  identity: RunVerdict["identity"],
  repository: RunVerdict["repository"],
): RunVerdict {
  const run = report.runs.find((r) => r.identity === identity && r.repository === repository);
  assert(run !== undefined, `${identity} ${repository}`);
  return run;
}

/** No fix changes /, /tmp, /home or a home directory: they are the machine's or a user's. */
function assertHarmless(report: DoctorReport): void {
  const fixes = [...report.checks.map((c) => c.fix ?? ""), ...report.runs.flatMap((r) => r.fixes)];
  for (const fix of fixes) {
    for (const [, path] of fix.matchAll(/\b(?:chmod|chown) \S+ "?([^"\s;]+)/g)) {
      assert(!/^\/(tmp|home(\/[^/]+)?)?\/?$/.test(path!), fix);
    }
  }
}

function check(report: DoctorReport, id: string): Check {
  const c = report.checks.find((c) => c.id === id);
  assert(c !== undefined, id);
  return c;
}

/** The user's ranges read straight from the file, independently of shoal's parser. */
async function fileRanges(file: string, user: TestUser) {
  const text = await Deno.readTextFile(file);
  return text.split("\n")
    .map((l) => l.split(":"))
    .filter(([owner]) => owner === user.name || owner === String(user.uid))
    .map(([, start, count]) => ({ start: Number(start), count: Number(count) }));
}

function doctorAs(user: TestUser, args: string[]): Promise<Result> {
  return runAs(user, shoalScript, ["doctor", ...args]);
}

Deno.test("doctor as root: JSON report of uid 0, exit status from canRun", async () => {
  const report = parseReport(await shoal(["doctor", "--format", "json"]));
  assertEquals(report.user.uid, 0);
  assertEquals(report.user.gid, 0);
  assertEquals(report.user.name, "root");
  assertEquals(report.user.home, "/root");
  assert(report.user.groups.some((g) => g.gid === 0 && g.name === "root"));
  // Root maps any ids itself; it needs no subordinate range.
  assertEquals(check(report, "subuid").status, "ok");
  assertEquals(check(report, "userns").status, "ok");
  assertEquals(check(report, "kernel").detail, `Linux ${Deno.osRelease()}`);
});

Deno.test("doctor as root: the table lists every check and ends with the run path", async () => {
  const json = parseReport(await shoal(["doctor", "--format", "json"]));
  const r = await shoal(["doctor"]);
  assertEquals(r.code, json.canRun ? 0 : 1);
  const lines = r.stdout.trimEnd().split("\n");
  assertEquals(lines[0], `shoal doctor for root (uid 0, gid 0), checkout install at ${repoRoot}`);
  assertMatch(lines[2] ?? "", /^CHECK\s+STATUS\s+DETAIL$/);
  for (const c of json.checks) {
    assertMatch(
      r.stdout,
      new RegExp(`\\n${c.title.replace(/[/.]/g, "\\$&")}\\s+(ok|WARN|FAIL)\\s`),
    );
  }
  const last = lines.at(-1) ?? "";
  if (json.canRun) {
    assertMatch(last, new RegExp(`^You can run containers: ${json.runPath} path, as yourself`));
  } else assertMatch(last, /^You cannot run containers here: .*Ask your admin/);
});

Deno.test("doctor as a user reports their /etc/subuid and /etc/subgid ranges exactly", async () => {
  const user = await testUser();
  const r = await doctorAs(user, ["--format", "json"]);
  const report = parseReport(r);
  assertEquals(report.user.uid, user.uid);
  assertEquals(report.user.name, user.name);
  assertEquals(report.user.home, user.home);
  assertEquals(report.subuid, await fileRanges("/etc/subuid", user));
  assertEquals(report.subgid, await fileRanges("/etc/subgid", user));
  assert(report.subuid.length > 0);
  const { start, count } = user.subuid;
  assertStringIncludes(check(report, "subuid").detail, `${start}-${start + count - 1}`);
  assertEquals(check(report, "subuid").status, "ok");
});

// The overlay probe's mount lives in the child's private namespace and ends with it.
Deno.test("doctor's probes leave no files behind", async () => {
  const user = await testUser();
  const tmp = await Deno.makeTempDir();
  try {
    await Deno.chown(tmp, user.uid, user.gid);
    const report = parseReport(
      await runAs(user, shoalScript, ["doctor", "--format", "json"], {
        env: { TMPDIR: tmp },
      }),
    );
    assertEquals(check(report, "overlay-userns").status, "ok");
    assertEquals(await Array.fromAsync(Deno.readDir(tmp)), []);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("doctor as a user: /dev/fuse access decides the unprivileged path", async () => {
  const user = await testUser();
  const report = parseReport(await doctorAs(user, ["--format", "json"]));
  const mode = (await Deno.stat("/dev/fuse")).mode ?? 0;
  const fuse = check(report, "fuse");
  if ((mode & 0o006) === 0o006) {
    assertEquals(fuse.status, "ok");
  } else {
    // The machine's truth: a user cannot open the device, so no squashfuse.
    assertEquals(fuse.status, "fail");
    assertStringIncludes(fuse.fix ?? "", "chmod 0666 /dev/fuse");
    assert(report.runPath !== "unprivileged");
    const table = await doctorAs(user, []);
    assertStringIncludes(table.stdout, "chmod 0666 /dev/fuse");
    if (!report.canRun) {
      assertEquals(table.code, 1);
      assertMatch(table.stdout, /You cannot run containers here: .*FUSE device/);
    }
  }
});

Deno.test("doctor as a user without subordinate ids gets the usermod fix, and runs only with --root", async () => {
  const user = await testUser(TEST_USER_NOSUB);
  const r = await doctorAs(user, ["--format", "json"]);
  const report = parseReport(r);
  assertEquals(report.subuid, []);
  assertEquals(report.subgid, []);
  for (const id of ["subuid", "subgid"]) {
    const c = check(report, id);
    assertEquals(c.status, "fail");
    assertMatch(
      c.fix ?? "",
      new RegExp(`^usermod --add-subuids \\d+-\\d+ --add-subgids \\d+-\\d+ ${user.name}\\b`),
    );
  }
  // `shoal run IMAGE` refuses such a user; `shoal run --root IMAGE` does not.
  assertEquals(report.canRun, false);
  assertEquals(r.code, 1);
  assertStringIncludes(report.runPathReason, "only --root runs");
  assertEquals(
    verdict(report, "self", "local").fixes[0],
    "use --root, or ask your admin for a subordinate id range",
  );
  const table = await doctorAs(user, []);
  assertEquals(table.code, 1);
  // One fix line for both ranges.
  const fixLines = table.stdout.split("\n").filter((l) => l.includes("usermod --add-subuids"));
  assertEquals(fixLines.length, 1, table.stdout);
  assertMatch(
    table.stdout,
    /You cannot run containers here: .*only --root runs.*You can run with --root/,
  );
});

Deno.test("doctor reports a broken config as a failed check and still runs every probe", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${dir}/shoal`);
    await Deno.writeTextFile(`${dir}/shoal/config.json`, '{ "format": "json", }');
    const r = await shoal(["doctor", "--format", "json"], { env: { XDG_CONFIG_HOME: dir } });
    const report = parseReport(r);
    const config = check(report, "config");
    assertEquals(config.status, "fail");
    assertStringIncludes(config.detail, `"${dir}/shoal/config.json": invalid JSON at line 1`);
    assertStringIncludes(
      config.detail,
      "the other checks use the site config without your preferences",
    );
    assertEquals(report.canRun, false);
    assertEquals(r.code, 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("doctor --help has examples; a bad format is a usage error", async () => {
  const help = await shoal(["doctor", "--help"]);
  assertEquals(help.code, 0);
  assertStringIncludes(help.stdout, "shoal doctor --format json");
  const bad = await shoal(["doctor", "--format", "yaml"]);
  assertEquals(bad.code, 2);
  assertEquals(bad.stdout, "");
});

function fakeChecks(overrides: Record<string, Check["status"]>): Check[] {
  return [...CHECK_IDS, "identity", "image", "tmpfs"].map((id) => ({
    id,
    title: id,
    status: overrides[id] ?? "ok",
    detail: "x",
  }));
}

Deno.test("run path: the helper when it is sound, else squashfuse, else none with why", () => {
  assertEquals(chooseRunPath(fakeChecks({}), false).runPath, "helper");
  // A missing helper (a warning) leaves the unprivileged path; a slow squashfuse does not block.
  const noHelper = chooseRunPath(fakeChecks({ helper: "warn", squashfuse: "warn" }), false);
  assertEquals(noHelper.runPath, "unprivileged");
  assertStringIncludes(noHelper.reason, "blocked by: helper");
  const none = chooseRunPath(fakeChecks({ helper: "warn", fuse: "fail" }), false);
  assertEquals(none.runPath, null);
  assertEquals(
    none.reason,
    "the helper path is blocked by: helper: x; the unprivileged path is blocked by: fuse: x",
  );
  // What stops every run stops both paths, and is named alone.
  for (const id of ["security", "rundir", "identity", "config"]) {
    const stopped = chooseRunPath(fakeChecks({ [id]: "fail" }), false);
    assertEquals([stopped.runPath, stopped.reason], [null, `${id}: x`]);
  }
  // A refused image or layer size, or no cap_sys_admin, blocks the helper path only.
  for (const id of ["image", "tmpfs", "privileges"]) {
    assertEquals(chooseRunPath(fakeChecks({ [id]: "warn" }), false).runPath, "unprivileged", id);
  }
  // The ranges themselves block no path (identity says what they mean for a run);
  // the helper maps ids itself, so it needs no newuidmap and no unprivileged userns.
  const noSub = fakeChecks({ subuid: "fail", newuidmap: "fail", userns: "fail" });
  assertEquals(chooseRunPath(noSub, false).runPath, "helper");
  assertEquals(chooseRunPath(noSub, true).runPath, "helper");
  const noSubNoHelper = fakeChecks({ subuid: "fail", helper: "warn" });
  assertEquals(chooseRunPath(noSubNoHelper, false).runPath, "unprivileged");
  const noNewuidmap = fakeChecks({ newuidmap: "fail", helper: "warn" });
  assertEquals(chooseRunPath(noNewuidmap, false).runPath, null);
  assertEquals(chooseRunPath(noNewuidmap, true).runPath, "unprivileged");
  assertEquals(chooseRunPath(fakeChecks({ config: "fail" }), true).runPath, null);
});

Deno.test("blocked user namespaces get the sysctl that unblocks them", () => {
  const none = {
    maxUserNamespaces: 15000,
    unprivilegedUsernsClone: undefined,
    apparmorRestrict: undefined,
  };
  assertEquals(usernsLimitsCheck(none).status, "ok");
  const zero = usernsLimitsCheck({ ...none, maxUserNamespaces: 0 });
  assertEquals(zero.status, "fail");
  assertMatch(zero.fix ?? "", /^sysctl -w user\.max_user_namespaces=15000 .*\/etc\/sysctl\.d\//);
  const debian = usernsLimitsCheck({ ...none, unprivilegedUsernsClone: 0 });
  assertEquals(debian.detail, "user.max_user_namespaces=15000, kernel.unprivileged_userns_clone=0");
  assertMatch(debian.fix ?? "", /^sysctl -w kernel\.unprivileged_userns_clone=1 /);
  const ubuntu = usernsLimitsCheck({ ...none, apparmorRestrict: 1 });
  assertMatch(ubuntu.fix ?? "", /^sysctl -w kernel\.apparmor_restrict_unprivileged_userns=0 /);
  assertEquals(usernsLimitsCheck({ ...none, maxUserNamespaces: 10 }).status, "warn");
});

Deno.test("old kernels: no overlay in user namespaces before 5.11, no idmapped mounts before 5.12", () => {
  const old = { release: "5.10.0-28-amd64", version: [5, 10] as [number, number] };
  assertEquals(kernelCheck(old).status, "warn");
  const idmapped = idmappedCheck(old);
  assertEquals(idmapped.status, "warn");
  assertStringIncludes(idmapped.detail, "the helper path needs them");
  const current = { release: "6.1.0-18-amd64", version: [6, 1] as [number, number] };
  assertEquals(kernelCheck(current).status, "ok");
  assertEquals(idmappedCheck(current).status, "ok");
});

// The scenarios below run doctor and `shoal run` side by side on an installed
// site with the helper, as the same user: doctor's verdict must be the run's.

let site: Promise<RunSite> | undefined;
/** The site of these tests, with the helper; each test restores its config. */
const helperSite = () => site ??= runSite(true);

async function doctorOn(s: RunSite, who: "user" | "nosub" | "root"): Promise<DoctorReport> {
  return parseReport(await s.shoal(who, ["doctor", "--format", "json"]));
}

/** The path `shoal run --debug` says it took. */
function runPathOf(r: Result): string | undefined {
  return r.stderr.match(/run path: (\S+): (.*)/)?.slice(1).join(": ");
}

Deno.test("kernelMountUserImages false: doctor and run --debug name it as why your images take the unprivileged path", async () => {
  const s = await helperSite();
  const image = await s.image("user");
  await s.writeConfig({ helper: { kernelMountUserImages: false } });
  try {
    const report = await doctorOn(s, "user");
    const own = verdict(report, "self", "local");
    assertEquals(own.runPath, "unprivileged");
    assertStringIncludes(own.reason, "helper.kernelMountUserImages is false");
    assertStringIncludes(own.fixes.join("\n"), `"helper": {"kernelMountUserImages": true}`);
    const table = await s.shoal("user", ["doctor"]);
    assertEquals(table.code, 0);
    assertMatch(
      table.stdout,
      /as yourself +your repository +unprivileged path: .*kernelMountUserImages is false/,
    );
    assertMatch(
      table.stdout,
      /^ {2}as yourself, your repository; with --root, your repository: an admin may set "helper": \{"kernelMountUserImages": true\}/m,
    );
    assertEquals(verdict(report, "self", "centralized").runPath, "helper");
    assertEquals(report.canRun, true);
    const run = await s.shoal("user", ["--debug", "run", image, "true"]);
    assertEquals(run.code, 0, run.stderr);
    const taken = runPathOf(run) ?? "";
    assertMatch(taken, /^unprivileged: .*helper\.kernelMountUserImages is false/);
    assert(!taken.includes("blocked by: shoal-mount helper ("), taken);
  } finally {
    await s.writeConfig();
  }
});

Deno.test("a group-writable site config: doctor says no run goes and exits 1, as every run fails", async () => {
  const s = await helperSite();
  const images = { user: await s.image("user"), root: await s.image("root") };
  await Deno.chmod(s.configFile, 0o664);
  try {
    for (const who of ["user", "root"] as const) {
      const r = await s.shoal(who, ["doctor", "--format", "json"]);
      const report = parseReport(r);
      assertEquals(r.code, 1, who);
      assertEquals(report.runs.map((v) => v.runPath), report.runs.map(() => null), who);
      assertEquals(check(report, "security").status, "fail");
      assertStringIncludes(report.runPathReason, `"${s.configFile}" must not be writable`);
      assertHarmless(report);
      const run = await s.shoal(who, ["run", images[who], "true"]);
      assertEquals(run.code, 1, who);
      assertStringIncludes(run.stderr, `"${s.configFile}" must not be writable by group or others`);
    }
  } finally {
    await Deno.chmod(s.configFile, 0o644);
  }
});

Deno.test("an installation under /tmp: doctor says no run goes, never to change /tmp, as every run fails", async () => {
  const s = await helperSite();
  const image = await s.image("user");
  const user = (await s.user("user"))!;
  const tmp = await Deno.makeTempDir({ dir: "/tmp", prefix: "shoal-doctor-" });
  try {
    await Deno.chmod(tmp, 0o755);
    const cp = await runCommand("cp", ["-al", `${s.dir}/prefix`, `${tmp}/prefix`]);
    assertEquals(cp.code, 0, cp.stderr);
    const bin = `${tmp}/prefix/bin/shoal`;
    const r = await runAs(user, bin, ["doctor", "--format", "json"]);
    const report = parseReport(r);
    assertEquals(r.code, 1);
    assertEquals(report.runs.map((v) => v.runPath), report.runs.map(() => null));
    const security = check(report, "security");
    assertEquals(security.status, "fail");
    assertStringIncludes(security.detail, '"/tmp" must not be writable by group or others');
    assertStringIncludes(security.fix ?? "", 'leave "/tmp" as it is');
    assertStringIncludes(security.fix ?? "", "install shoal elsewhere");
    assertHarmless(report);
    const table = await runAs(user, bin, ["doctor"]);
    assertEquals(table.code, 1);
    assert(!table.stdout.includes('chmod go-w "/tmp"'), table.stdout);
    const run = await runAs(user, bin, ["run", image, "true"]);
    assertEquals(run.code, 1);
    assertStringIncludes(run.stderr, '"/tmp" must not be writable by group or others');
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("a run directory squatted by another user: doctor says no run goes, as the run refuses it", async () => {
  const s = await helperSite();
  const image = await s.image("user");
  const victim = (await s.user("user"))!;
  const squatter = (await s.user("nosub"))!;
  const runs = `${s.dir}/runs`;
  await Deno.mkdir(runs);
  await Deno.chmod(runs, 0o1777);
  try {
    const made = await runAs(squatter, "mkdir", ["-m", "700", `${runs}/${victim.name}`]);
    assertEquals(made.code, 0, made.stderr);
    await s.writeConfig({ runDir: `${runs}/$USER` });
    const r = await s.shoal("user", ["doctor", "--format", "json"]);
    const report = parseReport(r);
    assertEquals(r.code, 1);
    assertEquals(report.runs.map((v) => v.runPath), report.runs.map(() => null));
    const rundir = check(report, "rundir");
    assertEquals(rundir.status, "fail");
    assertMatch(
      rundir.detail,
      new RegExp(`^the run directory cannot be used: ${runs}/${victim.name}\\b`),
    );
    const run = await s.shoal("user", ["run", image, "true"]);
    assertEquals(run.code, 1);
    assertStringIncludes(run.stderr, rundir.detail);
  } finally {
    await s.writeConfig();
    await Deno.remove(runs, { recursive: true });
  }
});

Deno.test("a user without subordinate ids: doctor's verdicts as yourself and with --root are the runs'", async () => {
  const s = await helperSite();
  const image = await s.image("nosub");
  const r = await s.shoal("nosub", ["doctor", "--format", "json"]);
  const report = parseReport(r);
  assertEquals(r.code, 1);
  for (const repository of ["local", "centralized"] as const) {
    assertEquals(verdict(report, "self", repository).runPath, null);
    assertEquals(verdict(report, "root", repository).runPath, "helper");
  }
  const plain = await s.shoal("nosub", ["run", image, "true"]);
  assertEquals(plain.code, 1);
  assertStringIncludes(plain.stderr, "only --root runs");
  assertStringIncludes(report.runPathReason, "only --root runs");
  const root = await s.shoal("nosub", ["--debug", "run", "--root", image, "true"]);
  assertEquals(root.code, 0, root.stderr);
  assertMatch(runPathOf(root) ?? "", /^helper: /);
});

Deno.test("a writable layer larger than the helper allows takes the unprivileged path instead of failing", async () => {
  const s = await helperSite();
  const image = await s.image("user");
  const small = await s.shoal("user", [
    "--debug",
    "run",
    "--writable-tmpfs-size",
    "64m",
    image,
    "true",
  ]);
  assertEquals(small.code, 0, small.stderr);
  assertMatch(runPathOf(small) ?? "", /^helper: /);
  const big = await s.shoal("user", [
    "--debug",
    "run",
    "--writable-tmpfs-size",
    "2g",
    image,
    "true",
  ]);
  assertEquals(big.code, 0, big.stderr);
  assertMatch(runPathOf(big) ?? "", /^unprivileged: .*helper\.writableTmpfsSize 1g/);
});

Deno.test("a centralized repository others could change: doctor and run take the unprivileged path, as the helper refuses it", async () => {
  const s = await helperSite();
  const { reference } = await testImages();
  const shared = `${s.dir}/shared`;
  await Deno.mkdir(`${shared}/central`, { recursive: true });
  await Deno.chmod(shared, 0o775);
  await s.writeConfig({
    repositories: { ...s.baseConfig.repositories as object, centralized: `${shared}/central` },
  });
  try {
    const pulled = await s.shoal("root", ["pull", "-q", "--centralized-repository", reference]);
    assertEquals(pulled.code, 0, pulled.stderr);
    const report = await doctorOn(s, "user");
    const central = verdict(report, "self", "centralized");
    assertEquals(central.runPath, "unprivileged");
    assertStringIncludes(central.reason, `"${shared}" must not be writable by group or others`);
    const run = await s.shoal("user", [
      "--debug",
      "run",
      "--centralized-repository",
      reference,
      "true",
    ]);
    assertEquals(run.code, 0, run.stderr);
    assertMatch(runPathOf(run) ?? "", /^unprivileged: .*the centralized repository: /);
  } finally {
    await s.writeConfig();
    await Deno.remove(shared, { recursive: true });
  }
});

Deno.test("doctor says whether shoal-exec is installed, which only runs with bytes that are not UTF-8 need", async () => {
  const s = await helperSite();
  const shim = `${s.dir}/prefix/libexec/shoal/shoal-exec`;
  const installed = await doctorOn(s, "user");
  assertEquals(check(installed, "exec-shim").status, "ok", check(installed, "exec-shim").detail);
  await Deno.rename(shim, `${shim}.away`);
  try {
    const missing = await doctorOn(s, "user");
    const c = check(missing, "exec-shim");
    assertEquals([c.status, c.detail], [
      "warn",
      `not installed at ${shim}: a run whose command or environment is not UTF-8 is refused`,
    ]);
    assertStringIncludes(c.fix ?? "", "libc6-dev");
    // Every other run goes as before.
    assertEquals(missing.canRun, installed.canRun);
  } finally {
    await Deno.rename(`${shim}.away`, shim);
  }
});
