import { assert, assertEquals, assertMatch, assertStringIncludes } from "./support/assert.ts";
import { installedShoal, installScript, rootOwnedTempDir, runInstall } from "./support/install.ts";
import { repoRoot, type Result, runCommand } from "./support/shoal.ts";
import { runAs, testUser } from "./support/users.ts";
import { siteConfigSchema } from "../mod/config/schema.ts";
import { VERSION } from "../mod/version.ts";
import { dirname } from "../mod/path.ts";
import type { DoctorReport } from "../mod/doctor/report.ts";
import { makeFuseUsable, testImages } from "./support/run.ts";

const TEMPLATE = `${repoRoot}/share/shoal.json.default`;
/** The launcher build: fast and the same on every machine, for tests about the lifecycle. */
const QUICK = ["--no-bootstrap", "--no-compile"];

function assertOk(r: Result, what: string): void {
  assertEquals(r.code, 0, `${what}: ${r.stderr}`);
}

/** Exactly one line on stderr, prefixed, nothing on stdout. */
function assertOneLineError(r: Result, code: number, pattern: RegExp): void {
  assertEquals(r.code, code, r.stderr);
  assertEquals(r.stdout, "");
  const lines = r.stderr.trimEnd().split("\n");
  assertEquals(lines.length, 1, r.stderr);
  assertMatch(lines[0] ?? "", /^install\.sh: error: /);
  assertMatch(lines[0] ?? "", pattern);
}

/** The action install.sh printed for `path` ("up to date", "kept"...), if any. */
function actionFor(stdout: string, path: string): string | undefined {
  for (const line of stdout.split("\n")) {
    const m = line.match(/^(.{10}) (\S+)/);
    if (m && m[2] === path) return m[1]?.trim();
  }
  return undefined;
}

interface Entry {
  path: string;
  isDirectory: boolean;
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  size: number;
}

/** Every entry under `dir` (relative paths, sorted), or [] when it does not exist. */
async function tree(dir: string): Promise<Entry[]> {
  const out: Entry[] = [];
  async function walk(rel: string): Promise<void> {
    const info = await Deno.lstat(rel ? `${dir}/${rel}` : dir);
    out.push({
      path: rel || ".",
      isDirectory: info.isDirectory,
      mode: (info.mode ?? 0) & 0o7777,
      uid: info.uid ?? -1,
      gid: info.gid ?? -1,
      mtime: info.mtime?.getTime() ?? 0,
      size: info.isDirectory ? 0 : info.size,
    });
    if (!info.isDirectory) return;
    for await (const e of Deno.readDir(rel ? `${dir}/${rel}` : dir)) {
      await walk(rel ? `${rel}/${e.name}` : e.name);
    }
  }
  try {
    await walk("");
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return [];
    throw err;
  }
  return out.sort((a, b) => a.path.localeCompare(b.path));
}

/** `shoal doctor`'s verdict on the site config, from its JSON report. */
async function configCheck(
  bin: string,
  run = (cmd: string, args: string[]) => runCommand(cmd, args, { cwd: "/" }),
): Promise<{ status: string; detail: string }> {
  const r = await run(bin, ["doctor", "--format", "json"]);
  const report = JSON.parse(r.stdout) as {
    checks: { id: string; status: string; detail: string }[];
  };
  const check = report.checks.find((c) => c.id === "config");
  assert(check, `doctor reports no config check: ${r.stdout}`);
  return check;
}

Deno.test("a site install runs for root and for an unprivileged user, outside the checkout", async () => {
  const { bin } = await installedShoal();
  const user = await testUser();
  for (const args of [["--version"], ["version"]]) {
    const asRoot = await runCommand(bin, args, { cwd: "/" });
    assertOk(asRoot, `shoal ${args.join(" ")} as root`);
    const asUser = await runAs(user, bin, args, { cwd: "/" });
    assertOk(asUser, `shoal ${args.join(" ")} as ${user.name}`);
    assertEquals(asUser.stdout, asRoot.stdout);
  }
  const r = await runCommand(bin, ["--version"], { cwd: "/" });
  assertEquals(r.stdout, `shoal ${VERSION}\n`);
});

Deno.test("a site install is root-owned, not group/other-writable, and independent of the checkout", async () => {
  const { prefix } = await installedShoal();
  const entries = await tree(prefix);
  assert(entries.some((e) => e.path === "etc/hooks.d"), "no hooks dir");
  for (const e of entries) {
    assertEquals([e.uid, e.gid], [0, 0], `${e.path} is not owned by root`);
    assertEquals(e.mode & 0o022, 0, `${e.path} is writable by group or others`);
  }
  const helper = entries.find((e) => e.path === "libexec/shoal/shoal-mount");
  let helperSource = true;
  try {
    await Deno.stat(`${repoRoot}/helper/Makefile`);
  } catch {
    helperSource = false;
  }
  assertEquals(helper?.mode, helperSource ? 0o4755 : undefined, "helper setuid root iff built");
  const shim = entries.find((e) => e.path === "libexec/shoal/shoal-exec");
  assertEquals(shim?.mode, helperSource ? 0o755 : undefined, "the exec shim, not setuid");
  // Moving or deleting the checkout must not break an installation.
  for (const e of entries) {
    if (e.isDirectory || e.path === "lib/shoal/deno") continue;
    const text = await Deno.readTextFile(`${prefix}/${e.path}`);
    assert(!text.includes(repoRoot), `${e.path} refers to the checkout ${repoRoot}`);
  }
  const config = JSON.parse(await Deno.readTextFile(`${prefix}/etc/shoal.json`));
  assertEquals(siteConfigSchema.parse(config).securityChecks, true);
});

Deno.test("reinstall changes nothing; a moved install finds its config; uninstall removes what it put there", async () => {
  const dir = await rootOwnedTempDir();
  try {
    const prefix = `${dir}/shoal`;
    const first = await runInstall(["--prefix", prefix, ...QUICK]);
    assertOk(first, "install");
    assertEquals(first.stderr, "", "a clean install warns about nothing");
    assertMatch(first.stdout, /^installing shoal into .*: bundle \(--no-compile\)$/m);
    // Where make and gcc are (scripts/bootstrap installs them), the launcher is a static
    // program; tests/launcher_test.ts holds it and the script to the same behaviour.
    assertMatch(first.stdout, /\/bin\/shoal \(launcher, a static program\)$/m);
    assertEquals(actionFor(first.stdout, `${prefix}/etc/shoal.json`), "installed");
    assertEquals(
      await Deno.readTextFile(`${prefix}/etc/shoal.json`),
      await Deno.readTextFile(TEMPLATE),
    );

    const before = await tree(dir);
    const second = await runInstall(["--prefix", prefix, ...QUICK]);
    assertOk(second, "reinstall");
    for (const f of ["bin/shoal", "lib/shoal/deno", "lib/shoal/shoal.js", "etc/shoal.json"]) {
      assertEquals(actionFor(second.stdout, `${prefix}/${f}`), "up to date", second.stdout);
    }
    assertEquals(actionFor(second.stdout, `${prefix}/etc/hooks.d/`), "up to date");
    assert(!/^(installed|updated|created|removed) /m.test(second.stdout), second.stdout);
    assertEquals(await tree(dir), before);

    const moved = `${dir}/moved`;
    await Deno.rename(prefix, moved);
    const version = await runCommand(`${moved}/bin/shoal`, ["--version"], { cwd: "/" });
    assertOk(version, "moved shoal --version");
    const found = await configCheck(`${moved}/bin/shoal`);
    assertEquals(found.status, "ok", found.detail);
    assertStringIncludes(found.detail, `${moved}/etc/shoal.json`);
    // However the launcher is started: through a link to it, through a linked bin directory
    // (both resolved with readlink), or by a relative path (taken as it is).
    await Deno.symlink(`${moved}/bin/shoal`, `${dir}/shoal-link`);
    await Deno.symlink(`${moved}/bin`, `${dir}/bin-link`);
    for (const bin of [`${dir}/shoal-link`, `${dir}/bin-link/shoal`]) {
      assertStringIncludes((await configCheck(bin)).detail, `${moved}/etc/shoal.json`, bin);
    }
    const relative = await configCheck(
      "./shoal",
      (cmd, args) => runCommand(cmd, args, { cwd: `${moved}/bin` }),
    );
    assertStringIncludes(relative.detail, `${moved}/etc/shoal.json`);
    await Deno.remove(`${dir}/shoal-link`);
    await Deno.remove(`${dir}/bin-link`);
    // The admin's edit (here an invalid one) is what the moved install reads...
    const edited = '{ "securityChecks": "yes" }\n';
    await Deno.writeTextFile(`${moved}/etc/shoal.json`, edited);
    const invalid = await configCheck(`${moved}/bin/shoal`);
    assertEquals(invalid.status, "fail");
    assertStringIncludes(invalid.detail, `"${moved}/etc/shoal.json"`);
    assertStringIncludes(invalid.detail, "securityChecks");

    // ...and survives a reinstall and an uninstall.
    const third = await runInstall(["--prefix", moved, ...QUICK]);
    assertOk(third, "reinstall over an edited config");
    assertEquals(actionFor(third.stdout, `${moved}/etc/shoal.json`), "kept");
    assertEquals(await Deno.readTextFile(`${moved}/etc/shoal.json`), edited);
    const removed = await runInstall(["--uninstall", "--prefix", moved]);
    assertOk(removed, "uninstall");
    assertMatch(removed.stdout, /^kept +\S+\/etc\/shoal\.json \(edited since it was installed\)$/m);
    assertEquals(await Deno.readTextFile(`${moved}/etc/shoal.json`), edited);
    assertEquals((await tree(moved)).map((e) => e.path), [".", "etc", "etc/shoal.json"]);
    const again = await runInstall(["--uninstall", "--prefix", moved]);
    assertOk(again, "second uninstall");
    assertEquals(again.stdout, `nothing to uninstall: no shoal installation in ${moved}\n`);

    // With the config as installed, nothing at all is left.
    await Deno.remove(moved, { recursive: true });
    assertOk(await runInstall(["--prefix", prefix, ...QUICK]), "fresh install");
    assertOk(await runInstall(["--uninstall", "--prefix", prefix]), "uninstall");
    assertEquals((await tree(dir)).map((e) => e.path), ["."]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("DENORT_BIN makes install.sh compile; a missing or wrong one fails and installs nothing", async () => {
  const dir = await rootOwnedTempDir();
  try {
    const prefix = `${dir}/shoal`;
    const args = ["--prefix", prefix, "--no-bootstrap"];
    const missing = await runInstall(args, { env: { DENORT_BIN: `${dir}/denort` } });
    assertOneLineError(missing, 1, /DENORT_BIN=.*\/denort failed: Could not find denort at/);
    // Any file is taken as the runtime; what it builds must then run shoal.
    await Deno.copyFile("/bin/true", `${dir}/denort`);
    const wrong = await runInstall(args, { env: { DENORT_BIN: `${dir}/denort` } });
    assertOneLineError(wrong, 1, /does not run shoal \(is DENORT_BIN the denort of Deno /);
    assertEquals((await tree(dir)).map((e) => e.path), [".", "denort"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("install.sh refuses a site prefix under a directory others can write or own, and changes nothing", async () => {
  const user = await testUser();
  const dir = await rootOwnedTempDir();
  const tmp = await Deno.makeTempDir({ dir: "/tmp", prefix: "shoal-install-" });
  try {
    await Deno.mkdir(`${dir}/shared`, { mode: 0o775 });
    await Deno.chmod(`${dir}/shared`, 0o775);
    await Deno.mkdir(`${dir}/theirs`, { mode: 0o755 });
    await Deno.chown(`${dir}/theirs`, user.uid, user.gid);
    await Deno.chmod(tmp, 0o755);
    const cases: [string, RegExp][] = [
      [`${dir}/shared/shoal`, new RegExp(`${dir}/shared is writable by group or others`)],
      [`${dir}/theirs/shoal`, new RegExp(`${dir}/theirs is owned by uid ${user.uid}`)],
      // /tmp itself: the fix is never to change it.
      [
        `${tmp}/shoal`,
        /: \/tmp is writable by group or others: .*leave it as it is and choose a --prefix/,
      ],
    ];
    for (const [prefix, why] of cases) {
      const before = await tree(dirname(prefix));
      const r = await runInstall(["--prefix", prefix, ...QUICK]);
      assertOneLineError(r, 1, why);
      assert(!/chmod|chown/.test(r.stderr), r.stderr);
      assertEquals(await tree(dirname(prefix)), before, "nothing installed");
    }
    assertEquals(((await Deno.stat("/tmp")).mode ?? 0) & 0o7777, 0o1777);
  } finally {
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(tmp, { recursive: true });
  }
});

/** What Deno needs to reach the npm registry here (a proxy, its CA), passed on to the test user. */
function networkEnv(): Record<string, string> {
  const names = [
    "NODE_EXTRA_CA_CERTS",
    "DENO_CERT",
    "DENO_TLS_CA_STORE",
    "NPM_CONFIG_REGISTRY",
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "NO_PROXY",
    "https_proxy",
    "http_proxy",
    "no_proxy",
  ];
  return Object.fromEntries(
    names.flatMap((n) => {
      const v = Deno.env.get(n);
      return v === undefined ? [] : [[n, v]];
    }),
  );
}

Deno.test("--user installs into the user's ~/.local without root, runs, and uninstalls cleanly", async () => {
  const user = await testUser();
  // A home of its own: other test files use the test user's real home at the same time.
  const home = await Deno.makeTempDir({ dir: user.home, prefix: "install-home-" });
  await Deno.chown(home, user.uid, user.gid);
  await Deno.chmod(home, 0o700);
  const local = `${home}/.local`;
  // deno bundle fetches its bundler from npm into DENO_DIR: a private one, removed after.
  const denoDir = await Deno.makeTempDir({ prefix: "shoal-test-deno-" });
  await Deno.chown(denoDir, user.uid, user.gid);
  const env = { HOME: home, DENO_DIR: denoDir, ...networkEnv() };
  const before = await tree(local);
  try {
    const r = await runAs(user, installScript, ["--user", "--no-bootstrap"], { env });
    assertOk(r, "install --user");
    assertEquals(r.stderr, "", "a user install into a private home warns about nothing");
    assertMatch(r.stdout, /^skipped +\S+ \(a user install runs without the setuid helper\)$/m);
    assertEquals(actionFor(r.stdout, `${local}/bin/shoal`), "installed");
    const version = await runAs(user, `${local}/bin/shoal`, ["--version"], { env });
    assertOk(version, "shoal --version");
    assertEquals(version.stdout, `shoal ${VERSION}\n`);
    const installed = (await tree(local)).filter((e) => !before.some((b) => b.path === e.path));
    assert(installed.length > 0);
    for (const e of installed) assertEquals(e.uid, user.uid, `${e.path} is not the user's`);
    assert(!installed.some((e) => e.path.endsWith("shoal-mount")), "a user install has no helper");
    // The exec shim (not setuid) carries commands that are not UTF-8 on path B too.
    const shim = installed.find((e) => e.path === "libexec/shoal/shoal-exec");
    assertEquals(shim?.mode, 0o755, "a user install has the exec shim");
    // Path B's guard, which its runs need.
    assert(installed.some((e) => e.path === "libexec/shoal/shoal-guard"), "no guard script");
    const config = JSON.parse(await Deno.readTextFile(`${local}/etc/shoal.json`));
    assertEquals(siteConfigSchema.parse(config).securityChecks, false);
    // A config only the user can write passes the checks meant for it.
    const check = await configCheck(
      `${local}/bin/shoal`,
      (cmd, args) => runAs(user, cmd, args, { env }),
    );
    assertEquals(check.status, "ok", check.detail);
    assertStringIncludes(check.detail, `${local}/etc/shoal.json`);

    // Doctor's report fits a user install: nothing of the user's must become root's, no
    // setuid helper goes into ~/.local; its verdict is what a run does.
    await makeFuseUsable();
    const { reference, registry } = await testImages();
    const installedConfig = await Deno.readTextFile(`${local}/etc/shoal.json`);
    const siteConfig = JSON.parse(installedConfig);
    await Deno.writeTextFile(
      `${local}/etc/shoal.json`,
      JSON.stringify({ ...siteConfig, registries: { insecure: [registry.host] } }),
    );
    const doctor = await runAs(user, `${local}/bin/shoal`, ["doctor", "--format", "json"], { env });
    const report = JSON.parse(doctor.stdout) as DoctorReport;
    assertEquals(report.install, { kind: "user", prefix: local });
    const fixes = report.checks.flatMap((c) => c.fix ?? []).join("\n");
    assert(!fixes.includes("chown root"), fixes);
    assert(!fixes.includes("install.sh --prefix"), fixes);
    assert(!fixes.includes("securityChecks"), fixes);
    for (const id of ["security", "config"]) {
      assertEquals(report.checks.find((c) => c.id === id)?.status, "ok", id);
    }
    assertEquals(report.runs.map((r) => r.runPath), ["unprivileged", "unprivileged"]);
    assertEquals(doctor.code, 0, doctor.stderr);
    assertOk(await runAs(user, `${local}/bin/shoal`, ["pull", "-q", reference], { env }), "pull");
    const run = await runAs(user, `${local}/bin/shoal`, ["--debug", "run", reference, "true"], {
      env,
    });
    assertOk(run, "run");
    assertMatch(run.stderr, /run path: unprivileged: /);
    // The image repository is the user's, not the installation's: uninstall leaves it.
    await Deno.remove(`${local}/share`, { recursive: true });
    await Deno.writeTextFile(`${local}/etc/shoal.json`, installedConfig);

    const removed = await runAs(user, installScript, ["--user", "--uninstall"], { env });
    assertOk(removed, "uninstall --user");
    assertEquals(await tree(local), before);
  } finally {
    await runAs(user, installScript, ["--user", "--uninstall"], { env });
    await Deno.remove(denoDir, { recursive: true });
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test("bad options exit 2 with one line; a site install without root is refused", async () => {
  for (const args of [["--bogus"], ["--prefix"], ["somewhere"], ["--prefix", "/"]]) {
    assertOneLineError(await runInstall(args), 2, /\(see '\.\/install\.sh --help'\)$/);
  }
  assertOneLineError(await runInstall(["--bogus"]), 2, /unknown option '--bogus'/);

  const help = await runInstall(["--help"]);
  assertOk(help, "--help");
  for (const word of ["--prefix", "--user", "--uninstall", "--no-compile", "DENORT_BIN"]) {
    assertStringIncludes(help.stdout, word);
  }

  const user = await testUser();
  const dir = await rootOwnedTempDir();
  try {
    const r = await runAs(user, installScript, ["--prefix", `${dir}/shoal`, "--no-bootstrap"]);
    assertOneLineError(r, 1, /a site install needs root: .*use --user/);
    assertEquals((await tree(dir)).map((e) => e.path), ["."]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
