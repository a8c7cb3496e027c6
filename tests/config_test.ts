/**
 * The site config and user preferences: where they are found, what a valid
 * file gives, the exact one-line message for each kind of bad file, and the
 * security checks on real root-owned trees (these tests run as root).
 */
import { dirname } from "node:path";
import { assert, assertEquals, assertRejects, assertThrows } from "./support/assert.ts";
import { repoRoot } from "./support/shoal.ts";
import { testUser } from "./support/users.ts";
import { ConfigError, SecurityError } from "../mod/errors.ts";
import { jsonSyntaxError } from "../mod/config/json.ts";
import { type InstallLayout, installLayout } from "../mod/config/layout.ts";
import { type ConfigEnv, currentEnv, findTool, loadConfig } from "../mod/config/load.ts";
import { installationProblems } from "../mod/config/security.ts";

const alice: ConfigEnv = { uid: 4242, user: "alice", home: "/home/alice", path: "" };

/**
 * A scratch installation under a fresh root-owned 0755 directory in /var/lib.
 * Not under /tmp: the checks rightly refuse a world-writable parent.
 */
interface Tree {
  base: string;
  layout: InstallLayout;
  /** Creates a file (and its missing parent directories, 0755) owned by root. */
  file(path: string, text: string, mode?: number): string;
  dir(path: string): string;
}

async function withTree(fn: (t: Tree) => Promise<void>): Promise<void> {
  const base = await Deno.makeTempDir({ dir: "/var/lib", prefix: "shoal-config-test-" });
  Deno.chmodSync(base, 0o755);
  const dir = (path: string): string => {
    const missing: string[] = [];
    for (let p = path; p !== base && !exists(p); p = dirname(p)) missing.unshift(p);
    for (const p of missing) {
      Deno.mkdirSync(p);
      Deno.chmodSync(p, 0o755); // whatever the umask
    }
    return path;
  };
  const file = (path: string, text: string, mode = 0o644): string => {
    dir(dirname(path));
    Deno.writeTextFileSync(path, text);
    Deno.chmodSync(path, mode);
    return path;
  };
  try {
    await fn({ base, layout: installLayout(`${base}/opt/bin/shoal`, "file:///unused"), file, dir });
  } finally {
    await Deno.remove(base, { recursive: true });
  }
}

function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Loads with checks on, as shoal does by default, for a fixed user (who does
 * not exist, so no cache: that has tests of its own).
 */
function load(layout: InstallLayout, extra: Parameters<typeof loadConfig>[0] = {}) {
  return loadConfig({ layout, env: alice, preferencesFile: null, cacheDir: null, ...extra });
}

/** The error's full text is `expected`, on one line, with a hint. */
function assertOneLine(err: ConfigError | SecurityError, expected: string): void {
  assertEquals(err.message, expected);
  assert(!err.message.includes("\n"), err.message);
  assert(err.hint !== undefined && err.hint.length > 0 && !err.hint.includes("\n"), err.hint);
}

Deno.test("layout: a compiled binary's prefix is the parent of its bin directory", () => {
  assertEquals(installLayout("/opt/shoal/bin/shoal", "file:///tmp/deno-compile-shoal/main.ts"), {
    kind: "compiled",
    prefix: "/opt/shoal",
    configFile: "/opt/shoal/etc/shoal.json",
    helper: "/opt/shoal/libexec/shoal/shoal-mount",
    execShim: "/opt/shoal/libexec/shoal/shoal-exec",
    enterShim: "/opt/shoal/libexec/shoal/shoal-enter",
    hooksDir: "/opt/shoal/etc/hooks.d",
    guardScript: "/opt/shoal/libexec/shoal/shoal-guard",
  });
});

Deno.test("layout: a bundle install is found from its script, not from Deno's path", () => {
  const l = installLayout("/opt/site/lib/shoal/deno", "file:///opt/site/lib/shoal/shoal.js");
  assertEquals(l.kind, "bundle");
  assertEquals(l.prefix, "/opt/site");
  assertEquals(l.configFile, "/opt/site/etc/shoal.json");
  assertEquals(l.helper, "/opt/site/libexec/shoal/shoal-mount");
  // `shoal run`'s own bundle entry, which the launcher starts for `run`.
  const run = installLayout("/opt/site/lib/shoal/deno", "file:///opt/site/lib/shoal/shoal-run.js");
  assertEquals([run.kind, run.prefix], ["bundle", "/opt/site"]);
});

Deno.test("layout: a checkout's prefix is the directory holding main.ts", () => {
  const fromMain = installLayout("/usr/bin/deno", `file://${repoRoot}/main.ts`);
  assertEquals(fromMain.kind, "checkout");
  assertEquals(fromMain.prefix, repoRoot);
  assertEquals(fromMain.configFile, `${repoRoot}/etc/shoal.json`);
  assertEquals(fromMain.hooksDir, `${repoRoot}/etc/hooks.d`);
  assertEquals(fromMain.guardScript, `${repoRoot}/mod/runtime/shoal-guard.sh`);
  // Under `deno test` the main module is a test file inside the checkout.
  assertEquals(installLayout(Deno.execPath(), import.meta.url).prefix, repoRoot);
  assertThrows(() => installLayout("/usr/bin/deno", "file:///nowhere/x.ts"), ConfigError);
});

Deno.test("no site config file: built-in defaults; a named file that is missing is an error", async () => {
  await withTree(async (t) => {
    const loaded = await load(t.layout);
    assertEquals(loaded.file, undefined);
    assertEquals(loaded.config.securityChecks, true);
    assertEquals(loaded.config.squashfs, { compression: "lz4", blockSizeKiB: 128 });
    assertEquals(loaded.paths.localRepository, "/home/alice/.local/share/shoal");
    assertEquals(loaded.runBase, { uid: 4242, xdgRuntimeDir: undefined });
    assertEquals(loaded.paths.helper, `${t.base}/opt/libexec/shoal/shoal-mount`);
    assertEquals(loaded.paths.hooksDir, `${t.base}/opt/etc/hooks.d`);

    // XDG_RUNTIME_DIR is where the run dir is looked for first (tests/rundir_test.ts).
    const xdg = await load(t.layout, {
      env: { ...alice, xdgDataHome: "/data/alice", xdgRuntimeDir: "/run/user/4242" },
    });
    assertEquals(xdg.paths.localRepository, "/data/alice/shoal");
    assertEquals(xdg.runBase, { uid: 4242, xdgRuntimeDir: "/run/user/4242" });

    const missing = `${t.base}/elsewhere.json`;
    const err = await assertRejects(() => load(t.layout, { file: missing }), ConfigError);
    assertOneLine(err, `"${missing}": cannot read: no such file`);
  });
});

Deno.test("a valid file loads, with defaults for what it leaves out and $HOME/$USER expanded", async () => {
  await withTree(async (t) => {
    t.file(
      t.layout.configFile,
      JSON.stringify({
        repositories: { local: "/scratch/$USER/images", centralized: "/apps/shoal/images" },
        runDir: "${HOME}/run/${USER}",
        runtime: { runc: "/usr/sbin/runc", init: "/opt/tini" },
        squashfs: { compression: "lz4" },
        environment: { set: { OMP_NUM_THREADS: "1" }, unset: ["LD_PRELOAD"] },
        mounts: [{ source: "/apps", destination: "/apps" }],
      }),
    );
    const loaded = await load(t.layout);
    assertEquals(loaded.file, t.layout.configFile);
    assertEquals(loaded.config.squashfs, { compression: "lz4", blockSizeKiB: 128 });
    assertEquals(loaded.config.pull, { parallelDownloads: 4, retries: 3, maxImageGiB: 64 });
    assertEquals(loaded.config.mounts, [
      { type: "bind", source: "/apps", destination: "/apps", readonly: true, optional: false },
    ]);
    assertEquals(loaded.config.environment.set, { OMP_NUM_THREADS: "1" });
    assertEquals(loaded.config.locks.timeoutSeconds, 60);
    assertEquals(loaded.config.helper.kernelMountUserImages, false);
    assertEquals(loaded.paths.localRepository, "/scratch/alice/images");
    assertEquals(loaded.paths.centralizedRepository, "/apps/shoal/images");
    assertEquals(loaded.runBase.runDir, "/home/alice/run/alice");
    assertEquals(loaded.paths.runc, "/usr/sbin/runc");
    // A configured path is taken as given, found or not.
    assertEquals(loaded.paths.init, "/opt/tini");
  });
});

Deno.test("each kind of invalid site config gets its own one-line message", async () => {
  const cases: [string, string][] = [
    [
      '{\n  "squashfs": {\n    "compression": "lz4",\n  }\n}',
      'invalid JSON at line 4, column 3: expected a property name in double quotes, found "}"',
    ],
    [
      '{"mounts": [\n  {"source": "/a", "destination": "/a"},\n]}',
      'invalid JSON at line 3, column 1: expected a value, found "]"',
    ],
    ["", "invalid JSON at line 1, column 1: expected a value, found the end of the file"],
    ["[]", "must be an object (got an array)"],
    ['{"securityChecks": "no"}', 'securityChecks: must be true or false (got "no")'],
    ['{"pull": {"parallelDownloads": "8"}}', 'pull.parallelDownloads: must be a number (got "8")'],
    [
      '{"pull": {"parallelDownloads": 2.5}}',
      "pull.parallelDownloads: must be an integer (got 2.5)",
    ],
    ['{"pull": {"parallelDownloads": 0}}', "pull.parallelDownloads: must be at least 1 (got 0)"],
    ['{"runtime": {"rnuc": "/usr/sbin/runc"}}', "runtime.rnuc: unknown key (did you mean runc?)"],
    [
      '{"squashfs": {"blocksizekib": 64}}',
      "squashfs.blocksizekib: unknown key (did you mean blockSizeKiB?)",
    ],
    ['{"colour": "blue"}', "colour: unknown key"],
    ['{"runtime": {"runc": "bin/runc"}}', "runtime.runc: must be an absolute path"],
    [
      '{"repositories": {"local": "images"}}',
      "repositories.local: must be an absolute path (may start with $HOME)",
    ],
    [
      '{"squashfs": {"compression": "bzip2"}}',
      'squashfs.compression: must be one of "zstd", "gzip", "lz4", "xz", "lzo", "lzma" (got "bzip2")',
    ],
    [
      '{"squashfs": {"blockSizeKiB": 100}}',
      "squashfs.blockSizeKiB: must be a power of two from 4 to 1024",
    ],
    [
      '{"environment": {"set": {"1BAD": "x"}}}',
      'environment.set: key "1BAD" must be a valid variable name',
    ],
    [
      '{"environment": {"unset": ["LD-PRELOAD"]}}',
      "environment.unset[0]: must be a valid variable name",
    ],
    ['{"mounts": [{"source": "/a"}]}', "mounts[0].destination: is required"],
    [
      '{"registries": {"mirrors": {"docker.io": ["mirror"]}}}',
      'registries.mirrors["docker.io"][0]: must be a URL (got "mirror")',
    ],
    [
      // README's example: named as the problem, not "must be an absolute path".
      '{"repositories": {"local": "$SCRATCH/shoal"}}',
      "repositories.local: unknown variable $SCRATCH (only $HOME and $USER are expanded)",
    ],
    [
      '{"runDir": "/scratch/$SCRATCH/run"}',
      "runDir: unknown variable $SCRATCH (only $HOME and $USER are expanded)",
    ],
    [
      '{"runDir": "/scratch/run/$USER/"}',
      "runDir: must be written without '.', '..', '//' or a trailing '/'",
    ],
  ];
  await withTree(async (t) => {
    for (const [text, expected] of cases) {
      const file = t.file(t.layout.configFile, text);
      const err = await assertRejects(() => load(t.layout), ConfigError);
      assertOneLine(err, `"${file}": ${expected}`);
    }
    // The hint points at the fix: the valid keys, or how many more problems follow.
    t.file(t.layout.configFile, '{"runtime": {"rnuc": "/usr/sbin/runc"}}');
    const unknown = await assertRejects(() => load(t.layout), ConfigError);
    assertEquals(
      unknown.hint,
      "valid keys in runtime: runc, tar2sqfs, mksquashfs, squashfuse, fusermount, newuidmap, " +
        "newgidmap, helper, init, stopTimeoutSeconds",
    );
    t.file(t.layout.configFile, '{"squashfs": {"level": 0}, "pull": {"retries": -1}}');
    const two = await assertRejects(() => load(t.layout), ConfigError);
    assertEquals(
      two.message,
      `"${t.layout.configFile}": squashfs.level: must be at least 1 (got 0)`,
    );
    assertEquals(two.hint, "see docs/admin/configuration.md; 1 more problem in the file");
  });
});

Deno.test("the JSON scanner agrees with JSON.parse on what is valid", () => {
  const texts = [
    '{"a": 1.5e+3, "b": [true, false, null, {}, []], "c": "\\u00e9\\n\\"", "d": -0}',
    " \n\t{ } ",
    "[[[[1]]]]",
    '"x"',
    '{"a": }',
    '{"a": tru}',
    '{"a": 01}',
    '{"a": 1.}',
    '{"a": -}',
    '{"a": "\\q"}',
    '{"a": "\\u12g4"}',
    '{"a": "x\ny"}',
    '{"a": 1} x',
    "{'a': 1}",
    '{"a" 1}',
    '{"a": 1,}',
    "[1,]",
    '{"a": 1',
    "\ufeff{}",
    "",
  ];
  for (const text of texts) {
    let valid = true;
    try {
      JSON.parse(text);
    } catch {
      valid = false;
    }
    assertEquals(jsonSyntaxError(text) === undefined, valid, JSON.stringify(text));
  }
});

Deno.test("user preferences: their own keys only, and never a site or security key", async () => {
  await withTree(async (t) => {
    const site = t.file(t.layout.configFile, '{"repositories": {"local": "/scratch/$USER"}}');
    const prefs = `${t.base}/home/.config/shoal/config.json`;
    t.file(prefs, '{"format": "json", "localRepository": "$HOME/my-images"}');
    const loaded = await load(t.layout, { preferencesFile: prefs });
    assertEquals(loaded.preferences, { format: "json", localRepository: "$HOME/my-images" });
    assertEquals(loaded.preferencesFile, prefs);
    // The user's own repository wins over the site's default.
    assertEquals(loaded.paths.localRepository, "/home/alice/my-images");

    // Found through XDG_CONFIG_HOME when no file is named.
    const viaXdg = await load(t.layout, {
      preferencesFile: undefined,
      env: { ...alice, xdgConfigHome: `${t.base}/home/.config` },
    });
    assertEquals(viaXdg.preferencesFile, prefs);
    assertEquals(viaXdg.preferences.format, "json");
    // None there: nothing read, the site's repository applies.
    const none = await load(t.layout, { preferencesFile: undefined });
    assertEquals(none.preferencesFile, undefined);
    assertEquals(none.paths.localRepository, "/scratch/alice");

    // The user's own key may use any variable of their environment; an unset one is named.
    t.file(prefs, '{"localRepository": "$SCRATCH/shoal"}');
    const scratch = (v: Record<string, string>) =>
      load(t.layout, { preferencesFile: prefs, env: { ...alice, variable: (n) => v[n] } });
    assertEquals(
      (await scratch({ SCRATCH: "/lus/alice" })).paths.localRepository,
      "/lus/alice/shoal",
    );
    assertOneLine(
      await assertRejects(() => scratch({}), ConfigError),
      `"${prefs}": localRepository: $SCRATCH is not set in your environment`,
    );
    assertOneLine(
      await assertRejects(() => scratch({ SCRATCH: "rel" }), ConfigError),
      `"${prefs}": localRepository: "$SCRATCH/shoal" gives "rel/shoal", not an absolute path`,
    );

    for (const key of ["runtime", "securityChecks"]) {
      t.file(
        prefs,
        JSON.stringify({ [key]: key === "runtime" ? { runc: "/home/alice/runc" } : false }),
      );
      const err = await assertRejects(
        () => load(t.layout, { preferencesFile: prefs }),
        ConfigError,
      );
      assertOneLine(
        err,
        `"${prefs}": ${key} cannot be set in user preferences (only format, localRepository); ` +
          `ask your admin to set it in ${site}`,
      );
    }
    t.file(prefs, '{"formt": "json"}');
    const typo = await assertRejects(() => load(t.layout, { preferencesFile: prefs }), ConfigError);
    assertOneLine(typo, `"${prefs}": formt: unknown key (did you mean format?)`);
    t.file(prefs, '{"format": "yaml"}');
    const bad = await assertRejects(() => load(t.layout, { preferencesFile: prefs }), ConfigError);
    assertOneLine(bad, `"${prefs}": format: must be one of "table", "json" (got "yaml")`);
  });
});

Deno.test("security: a trusted file must be owned by root and not writable by group or others", async () => {
  const user = await testUser();
  await withTree(async (t) => {
    const config = t.file(t.layout.configFile, "{}");
    await load(t.layout); // the clean tree passes

    Deno.chownSync(config, user.uid, user.gid);
    const owner = await assertRejects(() => load(t.layout), SecurityError);
    assertOneLine(owner, `"${config}" must be owned by root`);
    assertEquals(owner.hint, `run: chown root:root "${config}"`);
    Deno.chownSync(config, 0, 0);

    for (const mode of [0o664, 0o646]) {
      Deno.chmodSync(config, mode);
      const err = await assertRejects(() => load(t.layout), SecurityError);
      assertOneLine(err, `"${config}" must not be writable by group or others`);
      assertEquals(err.hint, `run: chmod go-w "${config}"`);
    }
  });
});

Deno.test("security: every parent directory up to / is checked", async () => {
  const user = await testUser();
  await withTree(async (t) => {
    t.file(t.layout.configFile, "{}");
    const etc = dirname(t.layout.configFile);

    Deno.chmodSync(etc, 0o775);
    const groupWritable = await assertRejects(() => load(t.layout), SecurityError);
    assertOneLine(groupWritable, `"${etc}" must not be writable by group or others`);
    Deno.chmodSync(etc, 0o755);

    Deno.chownSync(etc, user.uid, user.gid);
    const userOwned = await assertRejects(() => load(t.layout), SecurityError);
    assertOneLine(userOwned, `"${etc}" must be owned by root`);
    Deno.chownSync(etc, 0, 0);

    // Three levels up from the file.
    Deno.chmodSync(t.base, 0o757);
    const far = await assertRejects(() => load(t.layout), SecurityError);
    assertOneLine(far, `"${t.base}" must not be writable by group or others`);
    Deno.chmodSync(t.base, 0o755);

    await load(t.layout);
  });
});

Deno.test("security: a symlink is checked along its own directories and its target's", async () => {
  const user = await testUser();
  await withTree(async (t) => {
    // The config is a link to a root-owned file in a directory a user owns.
    const target = t.file(`${t.base}/users-dir/shoal.json`, "{}");
    Deno.chownSync(dirname(target), user.uid, user.gid);
    t.dir(dirname(t.layout.configFile));
    Deno.symlinkSync(target, t.layout.configFile);
    const viaTarget = await assertRejects(() => load(t.layout), SecurityError);
    assertOneLine(viaTarget, `"${t.base}/users-dir" must be owned by root`);
  });
  await withTree(async (t) => {
    // The prefix is a link to a clean tree, but the link sits in a writable directory.
    const real = installLayout(`${t.base}/real/bin/shoal`, "file:///unused");
    t.file(real.configFile, "{}");
    const shared = t.dir(`${t.base}/shared`);
    Deno.symlinkSync(real.prefix, `${shared}/opt`);
    const linked = installLayout(`${shared}/opt/bin/shoal`, "file:///unused");
    await load(real);
    Deno.chmodSync(shared, 0o775);
    const viaLink = await assertRejects(() => load(linked), SecurityError);
    assertOneLine(viaLink, `"${shared}" must not be writable by group or others`);
  });
});

Deno.test("security: the helper, runc, the hooks dir and each hook are checked too", async () => {
  const user = await testUser();
  await withTree(async (t) => {
    const helper = t.file(t.layout.helper, "#!/bin/sh\n", 0o4755);
    const hook = t.file(`${t.layout.hooksDir}/10-mpi.json`, "{}");
    const runc = t.file(`${t.base}/tools/runc`, "#!/bin/sh\n", 0o755);
    t.file(t.layout.configFile, JSON.stringify({ runtime: { runc } }));
    await load(t.layout);

    Deno.chownSync(helper, user.uid, user.gid);
    assertOneLine(
      await assertRejects(() => load(t.layout), SecurityError),
      `"${helper}" must be owned by root`,
    );
    Deno.chownSync(helper, 0, 0);

    Deno.chmodSync(runc, 0o775);
    assertOneLine(
      await assertRejects(() => load(t.layout), SecurityError),
      `"${runc}" must not be writable by group or others`,
    );
    Deno.chmodSync(runc, 0o755);

    Deno.chmodSync(t.layout.hooksDir, 0o777);
    assertOneLine(
      await assertRejects(() => load(t.layout), SecurityError),
      `"${t.layout.hooksDir}" must not be writable by group or others`,
    );
    Deno.chmodSync(t.layout.hooksDir, 0o755);

    Deno.chownSync(hook, user.uid, user.gid);
    assertOneLine(
      await assertRejects(() => load(t.layout), SecurityError),
      `"${hook}" must be owned by root`,
    );

    // For doctor: every problem, each once, without throwing.
    Deno.chownSync(helper, user.uid, user.gid);
    Deno.chmodSync(t.layout.hooksDir, 0o775);
    const loaded = await load(t.layout, { securityChecks: false });
    assertEquals(installationProblems(loaded).map((p) => p.message), [
      `"${helper}" must be owned by root`,
      `"${t.layout.hooksDir}" must not be writable by group or others`,
      `"${hook}" must be owned by root`,
    ]);
  });
});

Deno.test("security: the init program, <prefix>/bin and <prefix>/libexec are checked too", async () => {
  const user = await testUser();
  await withTree(async (t) => {
    const init = t.file(`${t.base}/tools/catatonit`, "#!/bin/sh\n", 0o755);
    t.file(t.layout.configFile, JSON.stringify({ runtime: { init } }));
    const bin = t.dir(`${t.layout.prefix}/bin`);
    // No helper installed yet: its directory is still what a later install trusts.
    const libexec = t.dir(`${t.layout.prefix}/libexec`);
    await load(t.layout);

    for (const path of [init, bin, libexec]) {
      for (const mode of [0o775, 0o757]) {
        Deno.chmodSync(path, mode);
        const writable = await assertRejects(() => load(t.layout), SecurityError);
        assertOneLine(writable, `"${path}" must not be writable by group or others`);
        assertEquals(writable.hint, `run: chmod go-w "${path}"`);
      }
      Deno.chmodSync(path, 0o755);
      Deno.chownSync(path, user.uid, user.gid);
      const owned = await assertRejects(() => load(t.layout), SecurityError);
      assertOneLine(owned, `"${path}" must be owned by root`);
      assertEquals(owned.hint, `run: chown root:root "${path}"`);
      Deno.chownSync(path, 0, 0);
    }

    // With none named by the site, the init found on PATH is the one checked.
    const found = t.file(`${t.base}/path/catatonit`, "#!/bin/sh\n", 0o755);
    t.file(t.layout.configFile, "{}");
    const env = { ...alice, path: dirname(found) };
    assertEquals((await load(t.layout, { env })).paths.init, found);
    Deno.chownSync(found, user.uid, user.gid);
    assertOneLine(
      await assertRejects(() => load(t.layout, { env }), SecurityError),
      `"${found}" must be owned by root`,
    );
  });
});

Deno.test("securityChecks false skips the checks, but only from a file other users cannot change", async () => {
  const user = await testUser();
  await withTree(async (t) => {
    const helper = t.file(t.layout.helper, "#!/bin/sh\n");
    Deno.chownSync(helper, user.uid, user.gid);
    const config = t.file(t.layout.configFile, '{"securityChecks": false}');
    const loaded = await load(t.layout);
    assertEquals(loaded.config.securityChecks, false);

    // A home install: the config belongs to the user running shoal.
    const self: ConfigEnv = { ...alice, uid: user.uid, user: user.name };
    Deno.chownSync(config, user.uid, user.gid);
    await load(t.layout, { env: self });
    // Anyone else's file could turn the checks off for everybody.
    const err = await assertRejects(() => load(t.layout), SecurityError);
    assertOneLine(err, `"${config}" must be owned by root or alice`);
    Deno.chmodSync(config, 0o666);
    const writable = await assertRejects(() => load(t.layout, { env: self }), SecurityError);
    assertOneLine(writable, `"${config}" must not be writable by group or others`);

    // The caller may skip them all.
    await load(t.layout, { securityChecks: false });
    t.file(t.layout.configFile, "{}");
    await assertRejects(() => load(t.layout), SecurityError);
    await load(t.layout, { securityChecks: false });
  });
});

Deno.test("runtime tools are found in PATH first, then the system directories", async () => {
  await withTree(async (t) => {
    const bin = t.dir(`${t.base}/bin`);
    const loaded = await load(t.layout);
    // runc is in /usr/sbin on Debian, outside a user's usual PATH.
    assertEquals(loaded.paths.runc, "/usr/sbin/runc");
    assertEquals(loaded.paths.squashfuse, "/usr/bin/squashfuse_ll");
    assertEquals(loaded.paths.fusermount, "/usr/bin/fusermount3");
    assertEquals(loaded.paths.init, "/usr/bin/catatonit");
    assertEquals(loaded.paths.tar2sqfs, "/usr/bin/tar2sqfs");
    assertEquals(loaded.paths.newuidmap, "/usr/bin/newuidmap");

    t.file(`${bin}/tar2sqfs`, "#!/bin/sh\n", 0o755);
    t.file(`${bin}/mksquashfs`, "not executable\n", 0o644);
    const own = await load(t.layout, { env: { ...alice, path: `relative/dir:${bin}:/usr/bin` } });
    assertEquals(own.paths.tar2sqfs, `${bin}/tar2sqfs`);
    assertEquals(own.paths.mksquashfs, "/usr/bin/mksquashfs");

    assertEquals(findTool(["shoal-no-such-tool"], bin), undefined);
    assertEquals(findTool(["shoal-no-such-tool", "runc"], ""), "/usr/sbin/runc");
  });
});

Deno.test("currentEnv falls back to /etc/passwd for the user name and home", () => {
  const saved = Object.fromEntries(
    ["USER", "LOGNAME", "HOME"].map((k) => [k, Deno.env.get(k)] as const),
  );
  try {
    for (const k of Object.keys(saved)) Deno.env.delete(k);
    const env = currentEnv();
    assertEquals([env.uid, env.user, env.home], [0, "root", "/root"]);
    Deno.env.set("USER", "someone");
    Deno.env.set("HOME", "/home/someone");
    assertEquals([currentEnv().user, currentEnv().home], ["someone", "/home/someone"]);
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) Deno.env.delete(k);
      else Deno.env.set(k, v);
    }
  }
});

Deno.test("config cache: an edit takes effect at once; a cache others could write is ignored", async () => {
  await withTree(async (t) => {
    const me: ConfigEnv = { ...alice, uid: 0, user: "root" };
    const cacheDir = `${t.base}/run`;
    const site = (env: string) =>
      t.file(t.layout.configFile, JSON.stringify({ environment: { set: { SITE: env } } }));
    const siteEnv = async () =>
      (await load(t.layout, { env: me, cacheDir })).config.environment.set.SITE;

    site("one");
    assertEquals(await siteEnv(), "one");
    const cache = `${cacheDir}/.config-cache.json`;
    assertEquals(Deno.statSync(cache).mode! & 0o777, 0o600);
    assertEquals(Deno.statSync(cacheDir).mode! & 0o777, 0o700);
    site("two"); // same length, same second: only the text tells
    assertEquals(await siteEnv(), "two");

    // The cache is what a start takes while the texts are the same...
    const written = JSON.parse(Deno.readTextFileSync(cache));
    const record = written.records[0];
    record.validated.config.environment.set.SITE = "from the cache";
    const keep = (...records: unknown[]) =>
      Deno.writeTextFileSync(cache, JSON.stringify({ records }));
    keep(record);
    assertEquals(await siteEnv(), "from the cache");
    // ...and the same build of shoal: another one may have other schemas or defaults...
    const other = { ...record, inputs: { ...record.inputs, build: "0.0.9 elsewhere" } };
    keep(other);
    assertEquals(await siteEnv(), "two");
    // ...whose result is kept beside this build's (the run bundle's and the program's)...
    const kept = JSON.parse(Deno.readTextFileSync(cache)).records;
    assertEquals(kept.map((r: typeof record) => r.inputs.build), [
      record.inputs.build,
      "0.0.9 elsewhere",
    ]);
    keep(other, record);
    assertEquals(await siteEnv(), "from the cache");
    // ...but not when anyone else could have written it, or it is another user's.
    Deno.chmodSync(cache, 0o622);
    assertEquals(await siteEnv(), "two");
    keep(record);
    Deno.chmodSync(cache, 0o600);
    Deno.chmodSync(cacheDir, 0o777);
    assertEquals(await siteEnv(), "two");
    Deno.chmodSync(cacheDir, 0o700);
    keep(record);
    Deno.chownSync(cache, 4242, 4242);
    assertEquals(await siteEnv(), "two");
    // A damaged cache is only a miss; an invalid config is reported whatever the cache holds.
    Deno.removeSync(cache);
    Deno.writeTextFileSync(cache, "{", { mode: 0o600 });
    assertEquals(await siteEnv(), "two");
    keep(null, { inputs: 1 });
    assertEquals(await siteEnv(), "two");
    t.file(t.layout.configFile, '{ "environment": { "set": { "1X": "y" } } }');
    await assertRejects(() => load(t.layout, { env: me, cacheDir }), ConfigError);
  });
});

Deno.test("a checkout runs from anywhere its user keeps it, /tmp included: it has nothing the installation checks refuse there", async () => {
  // The installation checks (security.ts) look at <prefix>/bin, libexec and etc, with every
  // directory above them; a checkout's prefix is its root, which may lie in /tmp or a home.
  const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "shoal-checkout-" });
  try {
    const listed = new Deno.Command("git", { args: ["ls-files", "-z"], cwd: repoRoot })
      .outputSync();
    const files = new TextDecoder().decode(listed.stdout).split("\0")
      .filter((f) => f !== "" && !f.startsWith("tests/"));
    for (const f of files) {
      await Deno.mkdir(dirname(`${dir}/${f}`), { recursive: true });
      await Deno.copyFile(`${repoRoot}/${f}`, `${dir}/${f}`);
    }
    await Deno.symlink(`${repoRoot}/.tools`, `${dir}/.tools`);
    const r = new Deno.Command("sh", {
      args: [`${dir}/scripts/shoal`, "images"],
      env: { XDG_DATA_HOME: `${dir}/data`, XDG_CACHE_HOME: `${dir}/cache` },
      stdout: "piped",
      stderr: "piped",
    }).outputSync();
    const err = new TextDecoder().decode(r.stderr);
    assertEquals(r.code, 0, err);
    assert(new TextDecoder().decode(r.stdout).startsWith("REPOSITORY"), err);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
