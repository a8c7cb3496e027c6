/**
 * The setuid helper shoal-mount, installed by install.sh and run directly by
 * the unprivileged test user, as shoal's runtime will run it: real images,
 * real runc, real loop devices. Every refusal is checked for its one-line
 * message and for leaving nothing behind (no mount in the host's table, no
 * loop device, no file changed).
 */
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./support/assert.ts";
import {
  assertNothingLeft,
  helper,
  type HelperSite,
  helperSite,
  hostMountsOf,
  Lines,
  makeBundle,
  processesRunning,
  processStatus,
  renderMapping,
  RUNC,
  shoalMaps,
  snapshot,
  spawnAs,
  squashfsImage,
  writeConfig,
} from "./support/helper.ts";
import { installedShoal } from "./support/install.ts";
import { eventually } from "./support/run.ts";
import { busyboxEntries } from "./support/oci.ts";
import { runCommand } from "./support/shoal.ts";
import type { TarEntry } from "./support/tar.ts";
import { runAs, TEST_USER_NOSUB, type TestUser, testUser, userArgv } from "./support/users.ts";

interface Fixture {
  site: HelperSite;
  user: TestUser;
  nosub: TestUser;
  /** The site config the tests start from (and return to). */
  config: Record<string, unknown>;
  /** The test user's local repository and run dir. */
  local: string;
  run: string;
  images: Record<string, string>;
}

let fixture: Promise<Fixture> | undefined;
const fx = () => (fixture ??= setUp());

function imageEntries(marker: string): TarEntry[] {
  return [
    ...busyboxEntries(),
    { type: "file", path: "etc/marker", content: `${marker}\n` },
    { type: "file", path: "etc/owned-by-1000", uid: 1000, gid: 1000 },
  ];
}

/** An image file name as repositories store them: sha256-<hex of marker>.sqsh. */
async function storedName(marker: string): Promise<string> {
  const hash = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(marker));
  return `sha256-${
    Array.from(new Uint8Array(hash), (b) => b.toString(16).padStart(2, "0")).join("")
  }.sqsh`;
}

async function asUser(user: TestUser, cmd: string, ...args: string[]): Promise<void> {
  const r = await runAs(user, cmd, args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(" ")} as ${user.name}: ${r.stderr}`);
}

async function setUp(): Promise<Fixture> {
  const user = await testUser();
  const nosub = await testUser(TEST_USER_NOSUB);
  const site = await helperSite({});
  // Not under the user's home: other test files check that it stays untouched.
  const local = `${site.dir}/local/${user.name}`;
  globalThis.addEventListener("unload", () => Deno.removeSync(site.dir, { recursive: true }));
  await Deno.mkdir(`${site.dir}/local`, { mode: 0o755 });
  await Deno.chmod(`${site.dir}/local`, 0o755);
  await Deno.mkdir(`${site.dir}/run`, { mode: 0o755 });
  await Deno.chmod(`${site.dir}/run`, 0o755);
  for (const u of [user, nosub]) {
    await Deno.mkdir(`${site.dir}/run/${u.name}`, { mode: 0o700 });
    await Deno.chown(`${site.dir}/run/${u.name}`, u.uid, u.gid);
  }
  await Deno.mkdir(local, { mode: 0o755 });
  await Deno.chown(local, user.uid, user.gid);
  const config = {
    securityChecks: true,
    repositories: { local: `${site.dir}/local/$USER`, centralized: site.central },
    runDir: `${site.dir}/run/$USER`,
    helper: { kernelMountUserImages: false },
  };
  await writeConfig(site, config);

  for (const d of [`${site.central}/images`, `${site.outside}/images`]) {
    await Deno.mkdir(d, { mode: 0o755 });
  }
  await Deno.mkdir(`${local}/images`, { mode: 0o755 });
  await Deno.chown(`${local}/images`, user.uid, user.gid);
  const images: Record<string, string> = {
    good: `${site.central}/images/${await storedName("central")}`,
    localRoot: `${local}/images/${await storedName("local-root")}`,
    mine: `${local}/images/${await storedName("mine")}`,
    other: `${site.central}/images/${await storedName("other")}`,
    bad: `${site.outside}/images/${await storedName("bad")}`,
    writable: `${site.central}/images/${await storedName("writable")}`,
    text: `${site.central}/images/${await storedName("text")}`,
    garbage: `${site.central}/images/${await storedName("garbage")}`,
    empty: `${site.central}/images/${await storedName("empty")}`,
    // Where a pull keeps a layer blob, and a partial pull: a squashfs may be pushed as a layer.
    blob: `${site.central}/blobs/sha256/${(await storedName("blob")).slice(7, 71)}`,
    partial: `${site.central}/tmp/pull-1/${await storedName("partial")}`,
  };
  await Deno.mkdir(`${site.central}/blobs/sha256`, { recursive: true, mode: 0o755 });
  await Deno.mkdir(`${site.central}/tmp/pull-1`, { recursive: true, mode: 0o755 });
  await squashfsImage(images.good!, imageEntries("central"));
  await squashfsImage(images.localRoot!, imageEntries("local-root"));
  await squashfsImage(images.mine!, imageEntries("mine"), user);
  await squashfsImage(images.other!, imageEntries("other"), nosub);
  await squashfsImage(images.bad!, imageEntries("bad"));
  await squashfsImage(images.writable!, imageEntries("writable"));
  await squashfsImage(images.blob!, imageEntries("blob"));
  await squashfsImage(images.partial!, imageEntries("partial"));
  await Deno.chmod(images.writable!, 0o666);
  await Deno.writeTextFile(images.text!, "not an image\n");
  await Deno.writeTextFile(images.empty!, "");
  // Squashfs magic and version, then noise: only the kernel can tell.
  const garbage = crypto.getRandomValues(new Uint8Array(65536));
  garbage.set([0x68, 0x73, 0x71, 0x73], 0);
  new DataView(garbage.buffer).setUint16(28, 4, true);
  new DataView(garbage.buffer).setUint16(30, 0, true);
  new DataView(garbage.buffer).setBigUint64(40, 65536n, true);
  await Deno.writeFile(images.garbage!, garbage);
  await Deno.symlink(images.good!, `${local}/images/${await storedName("link")}`);
  await Deno.symlink("/etc/shadow", `${local}/images/${await storedName("shadow")}`);
  return { site, user, nosub, config, local, run: `${site.dir}/run/${user.name}`, images };
}

let bundles = 0;

/** A new bundle of `user` in their run dir. */
async function bundle(
  f: Fixture,
  opts: { args: string[]; root: boolean; userns?: boolean; hostPid?: boolean },
  user = f.user,
): Promise<string> {
  const dir = `${f.site.dir}/run/${user.name}/b${++bundles}`;
  await makeBundle(user, dir, opts);
  return dir;
}

interface RunOpts {
  root?: boolean;
  userns?: boolean;
  size?: string;
  user?: TestUser;
  runc?: string[];
}

/** The helper's arguments for a run of IMAGE on BUNDLE, then `runc run` (or RUNC_ARGS). */
function helperArgs(f: Fixture, image: string, dir: string, opts: RunOpts = {}): string[] {
  const user = opts.user ?? f.user;
  const flags = [
    ...(opts.root ? ["--root"] : []),
    ...(opts.userns ? ["--userns"] : []),
    ...(opts.size ? ["--tmpfs-size", opts.size] : []),
  ];
  const runcArgs = opts.runc ??
    ["--root", `${f.site.dir}/run/${user.name}/state`, "run", "--bundle", dir, `c${++bundles}`];
  return ["run", "--image", image, "--bundle", dir, ...flags, "--", ...runcArgs];
}

/** `shoal-mount run` of IMAGE on BUNDLE, then `runc run` (or RUNC_ARGS). */
function runHelper(
  f: Fixture,
  image: string,
  dir: string,
  opts: RunOpts = {},
  env: Record<string, string> = {},
) {
  return helper(f.site, opts.user ?? f.user, helperArgs(f, image, dir, opts), env);
}

function assertRefused(r: { code: number; stdout: string; stderr: string }, re: RegExp, code = 1) {
  assertEquals(r.code, code, `exit status (stderr: ${r.stderr})`);
  assertEquals(r.stdout, "");
  const lines = r.stderr.trimEnd().split("\n");
  assertEquals(lines.length, 1, `one line: ${r.stderr}`);
  assertMatch(lines[0]!, /^shoal-mount: error: .+ \(.+\)$/);
  assertMatch(lines[0]!, re);
}

const SHOW = "id -u; stat -c %u /bin/busybox; stat -c %u:%g /etc/owned-by-1000; cat /etc/marker";

Deno.test("install.sh installs shoal-mount root-owned and setuid; check reports the site", async () => {
  const f = await fx();
  const installed = await installedShoal();
  const st = await Deno.stat(`${installed.prefix}/libexec/shoal/shoal-mount`);
  assertEquals([st.uid, (st.mode ?? 0) & 0o7777], [0, 0o4755]);

  const version = await helper(f.site, f.user, ["--version"]);
  assertEquals([version.code, version.stdout], [0, "shoal-mount 0.1.0\n"]);

  const check = await helper(f.site, f.user, ["check"]);
  assertEquals(check.code, 0, check.stderr);
  const { user } = f;
  for (
    const line of [
      `config: ${f.site.configFile}`,
      `runc: ${RUNC}`,
      `local repository: ${f.local}`,
      `centralized repository: ${f.site.central}`,
      `run dir: ${f.run}`,
      "user images: refused",
      "loop devices per user: 256",
      "writable layer size: 1g",
      `uid map --root: ${renderMapping(shoalMaps(user, true).uid)}`,
      `gid map --root: ${renderMapping(shoalMaps(user, true).gid)}`,
      `uid map: ${renderMapping(shoalMaps(user, false).uid)}`,
      `gid map: ${renderMapping(shoalMaps(user, false).gid)}`,
    ]
  ) assertStringIncludes(check.stdout, `${line}\n`);
  // Keep-id puts the caller's own uid between two parts of the range.
  assertStringIncludes(
    check.stdout,
    `uid map: 0 ${user.subuid.start} ${user.uid}, ${user.uid} ${user.uid} 1,`,
  );

  const nosub = await helper(f.site, f.nosub, ["check"]);
  assertStringIncludes(nosub.stdout, `uid map --root: 0 ${f.nosub.uid} 1\n`);
  assertStringIncludes(nosub.stdout, `uid map: ${f.nosub.uid} ${f.nosub.uid} 1\n`);

  // $HOME comes from the user database, like $USER above.
  await writeConfig(f.site, { repositories: { local: "${HOME}/images" } });
  const expanded = await helper(f.site, f.user, ["check"], { HOME: "/tmp" });
  assertStringIncludes(expanded.stdout, `local repository: ${user.home}/images\n`);
  // The defaults: shoal's own, with the run dir rule the runtime must follow.
  await writeConfig(f.site, {});
  try {
    const defaults = await helper(f.site, f.user, ["check"]);
    assertStringIncludes(defaults.stdout, `local repository: ${user.home}/.local/share/shoal\n`);
    assertStringIncludes(defaults.stdout, "centralized repository: none\n");
    // No runDir: the helper takes any run dir of the user's that passes its walk.
    assertStringIncludes(
      defaults.stdout,
      "run dir: any directory of yours, mode 0700 (see docs)\n",
    );
  } finally {
    await writeConfig(f.site, f.config);
  }
});

Deno.test("--root: uid 0 inside, image files keep their owners, nothing left on the host", async () => {
  const f = await fx();
  const dir = await bundle(f, {
    args: ["sh", "-c", `${SHOW}; cat /proc/self/uid_map`],
    root: true,
  });
  const r = await runHelper(f, f.images.good!, dir, { root: true });
  assertEquals(r.code, 0, r.stderr);
  const [uid, busybox, owned, marker, ...map] = r.stdout.trim().split("\n");
  assertEquals([uid, busybox, owned, marker], ["0", "0", "1000:1000", "central"]);
  assertEquals(
    map.map((l) => l.trim().split(/\s+/).join(" ")).join(", "),
    renderMapping(shoalMaps(f.user, true).uid),
  );
  await assertNothingLeft(f.images.good!, [dir]);
});

Deno.test("without --root the user keeps their uid; image files keep their owners", async () => {
  const f = await fx();
  // runc joins the helper's user namespace (runc 1.1 cannot give its exec fifo
  // and stdio pipes to a container root other than the caller otherwise).
  const joined = await bundle(f, { args: ["sh", "-c", SHOW], root: false, userns: true });
  const r = await runHelper(f, f.images.good!, joined, { userns: true });
  assertEquals([r.code, r.stdout], [0, `${f.user.uid}\n0\n1000:1000\ncentral\n`], r.stderr);
  await assertNothingLeft(f.images.good!, [joined]);
});

/** A user whose subordinate ids come in two ranges, with a run dir of theirs. */
async function twoRangeUser(f: Fixture): Promise<TestUser> {
  const u = await testUser("shoal-test-ranges", false);
  const r = await runCommand("flock", [
    "/tmp/shoal-test-users.lock",
    "usermod",
    ...["--add-subuids", "3000000-3000999", "--add-subuids", "4000000-4064535"],
    ...["--add-subgids", "3000000-3000999", "--add-subgids", "4000000-4064535"],
    u.name,
  ]);
  assertEquals(r.code, 0, r.stderr);
  await Deno.mkdir(`${f.site.dir}/run/${u.name}`, { mode: 0o700 }).catch(() => {});
  await Deno.chown(`${f.site.dir}/run/${u.name}`, u.uid, u.gid);
  return u;
}

Deno.test("the kernel gets shoal's maps: two subordinate ranges, with and without --root", async () => {
  const f = await fx();
  const user = await twoRangeUser(f);
  const show = ["sh", "-c", "cat /proc/self/uid_map; echo; cat /proc/self/gid_map"];
  for (const root of [true, false]) {
    const dir = await bundle(f, { args: show, root, userns: true }, user);
    const r = await runHelper(f, f.images.good!, dir, { root, userns: true, user });
    assertEquals(r.code, 0, r.stderr);
    const [uid, gid] = r.stdout.split("\n\n").map((m) =>
      m.trim().split("\n").map((l) => l.trim().split(/\s+/).join(" ")).join(", ")
    );
    const maps = shoalMaps(user, root);
    assertEquals([uid, gid], [renderMapping(maps.uid), renderMapping(maps.gid)]);
    // Both ranges are in it.
    assertStringIncludes(uid!, " 3000000 ");
    assertStringIncludes(uid!, " 4000000 ");
    await assertNothingLeft(f.images.good!, [dir]);
  }
});

Deno.test("--root without a subordinate range maps root to the caller alone", async () => {
  const f = await fx();
  const dir = await bundle(
    f,
    { args: ["sh", "-c", `${SHOW}; cat /proc/self/uid_map`], root: true },
    f.nosub,
  );
  const r = await runHelper(f, f.images.good!, dir, { root: true, user: f.nosub });
  assertEquals(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split("\n");
  // Only root's files have an owner inside; uid 1000 is not mapped.
  assertEquals(lines.slice(0, 4), ["0", "0", "65534:65534", "central"]);
  assertEquals(lines.slice(4).map((l) => l.trim().split(/\s+/).join(" ")), [`0 ${f.nosub.uid} 1`]);
  await assertNothingLeft(f.images.good!, [dir]);
});

Deno.test("--userns: runc joins the helper's namespace and creates none (blocked userns)", async () => {
  // The container's user namespace is compared with the one the helper made and bind-mounted
  // at DIR/userns, while the container waits on its stdin. Not with strace -f, as before: a
  // traced runc init sometimes hung in its execve for good (Go's SIGURG reached a thread that
  // the exec was ending, and strace 6.1 left the thread stopped).
  const f = await fx();
  const namespaces = async (userns: boolean) => {
    const script = "readlink /proc/self/ns/user; read -r x || true";
    const dir = await bundle(f, { args: ["sh", "-c", script], root: true, userns });
    const [cmd, ...args] = userArgv(
      f.user,
      f.site.helper,
      helperArgs(f, f.images.good!, dir, { root: true }),
    );
    const child = new Deno.Command(cmd!, {
      args,
      cwd: "/",
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const reader = child.stdout.getReader();
    let line = "";
    while (!line.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) break;
      line += new TextDecoder().decode(value);
    }
    reader.releaseLock();
    // Bind-mounted in the helper's own mount namespace: seen through its /proc/PID/root.
    const helpers = (await Deno.stat(`/proc/${child.pid}/root${dir}/userns`)).ino;
    await child.stdin.close();
    const out = await child.output();
    assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
    await assertNothingLeft(f.images.good!, [dir]);
    const container = /^user:\[(\d+)\]$/.exec(line.trim());
    assert(container, `no user namespace from the container: '${line}'`);
    return { container: Number(container[1]), helpers };
  };
  const joined = await namespaces(true);
  assertEquals(
    joined.container,
    joined.helpers,
    "with --userns, the container is in the helper's namespace",
  );
  const own = await namespaces(false);
  assert(own.container !== own.helpers, "without --userns, runc makes its own");
});

Deno.test("refuses images it must not mount, leaving nothing behind", async () => {
  const f = await fx();
  const dir = await bundle(f, { args: ["true"], root: true });
  const { central } = f.site;
  const goodName = f.images.good!.slice(`${central}/images/`.length);
  const [dirName, noneName, linkName, shadowName] = await Promise.all(
    ["dir", "none", "link", "shadow"].map(storedName),
  );
  await Deno.mkdir(`${central}/images/${dirName}`, { mode: 0o755 }).catch(() => {});
  const nowhere = /is not an image file of the image repositories/;
  const refusals = (userImages: boolean): [string, string, RegExp, number?][] =>
    userImages
      ? [
        ["root's image in the local repository", f.images.localRoot!, /belongs to uid 0/],
        ["a symlink to an allowed image", `${f.local}/images/${linkName}`, /is a symlink/],
        ["a symlink to /etc/shadow", `${f.local}/images/${shadowName}`, /is a symlink/],
      ]
      : [
        ["a stored name outside the repositories", f.images.bad!, nowhere],
        ["a cached layer blob of the centralized repository", f.images.blob!, nowhere],
        ["a partial pull of the centralized repository", f.images.partial!, nowhere],
        ["a /proc file", "/proc/self/cmdline", nowhere],
        ["a file the user cannot read", "/etc/shadow", nowhere],
        ["not as stored", `${central}/images/../images/${goodName}`, nowhere],
        ["a name no image has", `${central}/images/${goodName.toUpperCase()}`, nowhere],
        [
          "the user's own image",
          f.images.mine!,
          /is in your local repository.*kernelMountUserImages/,
        ],
        ["another user's image", f.images.other!, new RegExp(`belongs to uid ${f.nosub.uid}`)],
        ["a group-writable root image", f.images.writable!, /is writable by group or others/],
        ["not squashfs", f.images.text!, /is not a squashfs 4 image/],
        ["an empty file", f.images.empty!, /is empty/],
        ["squashfs magic, garbage", f.images.garbage!, /the kernel cannot mount the image/],
        ["a directory", `${central}/images/${dirName}`, /is not a regular file/],
        ["missing", `${central}/images/${noneName}`, /No such file or directory/],
        ["a relative path", "good.sqsh", /--image must be an absolute path/, 2],
      ];
  const watched = [...Object.values(f.images), "/etc/shadow", `${dir}/config.json`];
  const before = await snapshot(watched);
  for (const userImages of [false, true]) {
    await writeConfig(f.site, { ...f.config, helper: { kernelMountUserImages: userImages } });
    try {
      for (const [what, image, re, code] of refusals(userImages)) {
        const r = await runHelper(f, image, dir, { root: true });
        assertRefused(r, re, code ?? 1);
        if (image.startsWith("/")) await assertNothingLeft(image, [dir]);
        assertEquals(await snapshot(watched), before, what);
      }
    } finally {
      await writeConfig(f.site, f.config);
    }
  }
});

Deno.test("refuses a symlinked local repository (-> /, -> /proc, -> the centralized one)", async () => {
  const f = await fx();
  const dir = await bundle(f, { args: ["true"], root: true });
  const goodName = f.images.good!.replace(/^.*\//, "");
  for (const target of ["/", "/proc", f.site.central]) {
    const link = `${f.local}/linked-${target.replace(/\//g, "_")}`;
    await Deno.symlink(target, link).catch(() => {});
    await writeConfig(f.site, {
      ...f.config,
      repositories: {
        ...f.config.repositories as object,
        local: link.replace(f.user.name, "$USER"),
      },
      helper: { kernelMountUserImages: true },
    });
    try {
      const r = await runHelper(f, `${link}/images/${goodName}`, dir, { root: true });
      assertRefused(r, /linked-[^"]*" is a symlink/);
      await assertNothingLeft(f.images.good!, [dir]);
    } finally {
      await writeConfig(f.site, f.config);
    }
  }
});

Deno.test("mounts the centralized repository's images, and the user's own where the site allows", async () => {
  const f = await fx();
  const dir = await bundle(f, { args: ["cat", "/etc/marker"], root: true });
  const ok = async (image: string, marker: string) => {
    const r = await runHelper(f, image, dir, { root: true });
    assertEquals([r.code, r.stdout], [0, `${marker}\n`], r.stderr);
    await assertNothingLeft(image, [dir]);
  };
  await ok(f.images.good!, "central");
  await writeConfig(f.site, { ...f.config, helper: { kernelMountUserImages: true } });
  try {
    await ok(f.images.mine!, "mine");
    assertRefused(await runHelper(f, f.images.other!, dir, { root: true }), /belongs to uid/);
  } finally {
    await writeConfig(f.site, f.config);
  }
});

Deno.test("refuses bundle dirs it must not mount on", async () => {
  const f = await fx();
  const { user, run } = f;
  const good = f.images.good!;
  const mk = async (path: string, mode = 0o700, owner = user.uid) => {
    await Deno.mkdir(path, { mode });
    await Deno.chmod(path, mode);
    await Deno.chown(path, owner, owner === 0 ? 0 : user.gid);
  };
  await mk(`${run}/rootowned`, 0o700, 0);
  await mk(`${run}/g750`, 0o750);
  await mk(`${run}/o755`, 0o755);
  await mk(`${run}/real`);
  await Deno.symlink(`${run}/real`, `${run}/link`);
  await mk(`${run}/subreal`);
  await mk(`${run}/subreal/b`);
  await Deno.symlink(`${run}/subreal`, `${run}/sub`);
  await mk(`${run}/gw`, 0o777);
  await mk(`${run}/gw/b`);
  await mk(`${f.site.dir}/elsewhere`);
  const rootfsLink = await bundle(f, { args: ["true"], root: true });
  await Deno.symlink("/etc", `${rootfsLink}/rootfs`);
  const mntLink = await bundle(f, { args: ["true"], root: true });
  await Deno.symlink("/etc", `${mntLink}/.mnt`);

  const cases: [string, RegExp, number?][] = [
    [`${run}/rootowned`, /must be owned by you with mode 0700/],
    [`${run}/g750`, /must be owned by you with mode 0700/],
    [`${run}/o755`, /must be owned by you with mode 0700/],
    [`${run}/link`, /bundle "[^"]*\/link" is a symlink/],
    // runDir is set: the bundle's BASE must be it, exactly.
    [`${run}/sub/b`, /is not directly in the run dir/],
    [`${run}/gw/b`, /is not directly in the run dir/],
    [`${f.site.dir}/elsewhere`, /is not directly in the run dir/],
    [run, /is not directly in the run dir/],
    ["/", /its name must be/],
    ["/etc", /is not directly in the run dir/],
    [`${run}/-x`, /its name must be/],
    [rootfsLink, /rootfs" is not a directory of yours/],
    [mntLink, /\.mnt" is not a directory of yours/],
    [`${run}/./real`, /--bundle must be an absolute path/, 2],
    [`${run}/real/`, /--bundle must be an absolute path/, 2],
  ];
  const etcMounts = (await hostMountsOf(" /etc ")).length;
  const watched = ["/etc/hostname", "/etc/passwd", `${rootfsLink}/config.json`];
  const before = await snapshot(watched);
  for (const [dir, re, code] of cases) {
    const r = await runHelper(f, good, dir, { root: true });
    assertRefused(r, re, code ?? 1);
    await assertNothingLeft(good, [run]);
    assertEquals(await snapshot(watched), before, dir);
  }
  assertEquals((await hostMountsOf(" /etc ")).length, etcMounts);
  // Nothing was created where the helper refused.
  for (const dir of [`${run}/rootowned`, `${run}/real`, `${f.site.dir}/elsewhere`]) {
    assertEquals([...Deno.readDirSync(dir)].length, 0, dir);
  }
});

/** A directory made by root for `owner`, with `mode`. */
async function ownedDir(path: string, owner: TestUser, mode = 0o700) {
  await Deno.mkdir(path, { mode });
  await Deno.chmod(path, mode);
  await Deno.chown(path, owner.uid, owner.gid);
}

Deno.test("without runDir: any run dir of the caller's, mode 0700, on a safe path; another user's never", async () => {
  const f = await fx();
  const victim = f.user;
  const attacker = await testUser("shoal-attacker", false);
  const { runDir: _, ...noRunDir } = f.config;
  await writeConfig(f.site, noRunDir);
  const tag = crypto.randomUUID().slice(0, 8);
  const victimBase = `/tmp/shoal-${victim.uid}.${tag}`;
  const mine = `/tmp/shoal-${attacker.uid}.${tag}`;
  const created: string[] = [victimBase, mine];
  try {
    await ownedDir(victimBase, victim);
    await makeBundle(victim, `${victimBase}/b`, { args: ["cat", "/etc/marker"], root: true });
    await ownedDir(mine, attacker);
    await Deno.symlink(victimBase, `${mine}/base`);
    await ownedDir(`${mine}/real`, attacker);
    await ownedDir(`${mine}/real/base`, attacker);
    await ownedDir(`${mine}/real/base/b`, attacker);
    await Deno.symlink(`${mine}/real`, `${mine}/mid`);
    await ownedDir(`${mine}/open`, attacker, 0o755);
    await ownedDir(`${mine}/open/b`, attacker);
    await ownedDir(`${mine}/b755`, attacker, 0o755);
    await ownedDir(`${mine}/gw`, attacker, 0o777);
    await ownedDir(`${mine}/gw/base`, attacker);
    await ownedDir(`${mine}/gw/base/b`, attacker);
    const cases: [string, string, RegExp][] = [
      [
        "a BASE that is a symlink to the victim's",
        `${mine}/base/b`,
        /\/base", the bundle's run dir, is a symlink/,
      ],
      [
        "the victim's BASE",
        `${victimBase}/b`,
        /the bundle's run dir, must be owned by you with mode 0700/,
      ],
      [
        "a BASE of mode 0755",
        `${mine}/open/b`,
        /\/open", the bundle's run dir, must be owned by you with mode 0700/,
      ],
      ["a symlink in the middle", `${mine}/mid/base/b`, /\/mid" on the bundle path is a symlink/],
      [
        "a bundle of mode 0755",
        `${mine}/b755`,
        /bundle "[^"]*\/b755" must be owned by you with mode 0700/,
      ],
      [
        "a world-writable dir above BASE",
        `${mine}/gw/base/b`,
        /\/gw" on the bundle path must not be writable/,
      ],
    ];
    const before = await snapshot([`${victimBase}/b/config.json`, `${victimBase}/b`]);
    for (const [what, dir, re] of cases) {
      const r = await helper(f.site, attacker, [
        ...["run", "--image", f.images.good!, "--bundle", dir, "--root", "--"],
        ...["--root", `${mine}/state`, "run", "--bundle", dir, `a${++bundles}`],
      ]);
      assertRefused(r, re);
      await assertNothingLeft(f.images.good!, [victimBase, mine]);
      assertEquals(
        await snapshot([`${victimBase}/b/config.json`, `${victimBase}/b`]),
        before,
        what,
      );
    }

    // The victim's own private fallback run dir, and /run/user/UID/shoal, work.
    const ok = async (dir: string) => {
      const r = await runHelper(f, f.images.good!, dir, {
        root: true,
        runc: ["--root", `${f.run}/state`, "run", "--bundle", dir, `c${++bundles}`],
      });
      assertEquals([r.code, r.stdout], [0, "central\n"], r.stderr);
      await assertNothingLeft(f.images.good!, [dir]);
    };
    await ok(`${victimBase}/b`);
    const runUser = `/run/user/${victim.uid}`;
    if (await Deno.lstat(runUser).then(() => false, () => true)) {
      await Deno.mkdir("/run/user", { recursive: true, mode: 0o755 });
      await ownedDir(runUser, victim);
      created.push(runUser);
    }
    const shoalDir = `${runUser}/shoal-test-${tag}`;
    await ownedDir(shoalDir, victim);
    created.push(shoalDir);
    await makeBundle(victim, `${shoalDir}/b`, { args: ["cat", "/etc/marker"], root: true });
    await ok(`${shoalDir}/b`);
  } finally {
    await writeConfig(f.site, f.config);
    for (const dir of created.reverse()) {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  }
});

Deno.test("a path swapped between check and use never mounts the wrong thing", async () => {
  const f = await fx();
  const { run, local, user } = f;
  // The image name flips between the user's own image (allowed here), root's
  // (refused in the local repository), and a symlink to an image elsewhere.
  const images = `${local}/images`;
  const race = `${images}/${await storedName("race")}`;
  await Deno.link(f.images.localRoot!, `${images}/race-root`);
  await Deno.link(f.images.mine!, `${images}/race-mine`);
  await Deno.symlink(f.images.bad!, `${images}/race-link`);
  await Deno.link(f.images.mine!, race);
  // A bundle path component flips between a directory and a symlink to another bundle.
  await asUser(user, "mkdir", "-m", "700", `${run}/rp`, `${run}/evil`);
  await makeBundle(user, `${run}/rp/b`, {
    args: ["sh", "-c", "echo real; cat /etc/marker"],
    root: true,
  });
  await makeBundle(user, `${run}/evil/b`, {
    args: ["sh", "-c", "echo evil; cat /etc/marker"],
    root: true,
  });
  await Deno.symlink(`${run}/evil`, `${run}/rp-link`);
  const swapper = new Deno.Command("sh", {
    args: [
      "-c",
      `cd "$1" || exit 1
       i=0
       while [ $i -lt 200000 ]; do
         i=$((i + 1))
         ln -f race-root race.tmp && mv -f race.tmp "$3"
         cp -P race-link race.tmp && mv -f race.tmp "$3"
         ln -f race-mine race.tmp && mv -f race.tmp "$3"
         mv "$2/rp" "$2/rp-dir" && mv "$2/rp-link" "$2/rp"
         mv "$2/rp" "$2/rp-link" && mv "$2/rp-dir" "$2/rp"
         # A moment in the good state (own image, real bundle): on a loaded machine the
         # flips alone left no run that could win, and the test needs both sides.
         sleep 0.005
       done`,
      "swapper",
      images,
      run,
      race,
    ],
    stdout: "null",
    stderr: "null",
  }).spawn();
  const outcomes = new Map<string, number>();
  // The flipping directory is the bundle's BASE: any BASE of the user's is taken without runDir.
  const { runDir: _, ...noRunDir } = f.config;
  await writeConfig(f.site, { ...noRunDir, helper: { kernelMountUserImages: true } });
  try {
    // 200 tries, and up to 600 until one ran: on a loaded machine the winning
    // timing (the good image and the real bundle dir at each look) can be rare.
    for (let i = 0; i < 600 && (i < 200 || !outcomes.has("ran")); i++) {
      const r = await runHelper(f, race, `${run}/rp/b`, { root: true });
      assert(!/evil|bad|local-root/.test(r.stdout), `mounted the wrong thing: ${r.stdout}`);
      // runc resolves the bundle path itself, as the user: it may land on the other one.
      const outcome = r.code === 0 && r.stdout === "real\nmine\n"
        ? "ran"
        : r.stderr.startsWith("shoal-mount: error: ")
        ? r.stderr.replace(/"[^"]*"/g, "PATH").trim()
        : "runc failed";
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
    }
  } finally {
    swapper.kill("SIGKILL");
    await swapper.status;
    await writeConfig(f.site, f.config);
  }
  for (const image of ["race-root", "race-mine"]) {
    await assertNothingLeft(`${images}/${image}`, [run]);
  }
  await assertNothingLeft(f.images.bad!, [run]);
  const ran = outcomes.get("ran") ?? 0;
  const refusals = [...outcomes.keys()].filter((k) => k.startsWith("shoal-mount: error:"));
  // Both sides of the race happened, and each refusal named its reason.
  assert(ran > 0 && refusals.length > 0, `outcomes: ${JSON.stringify([...outcomes])}`);
  for (const k of refusals) {
    assertMatch(
      k,
      // runc, resolving the path as the user while it flips, may create a 0755 bundle there.
      /is a symlink|belongs to uid 0|on the bundle path is a symlink|cannot open|is not a directory|must be owned by you with mode 0700/,
    );
  }
});

Deno.test("refuses a tampered installation", async () => {
  const f = await fx();
  const { site, user } = f;
  const dir = await bundle(f, { args: ["true"], root: true });
  const refusedBoth = async (re: RegExp) => {
    assertRefused(await helper(site, user, ["check"]), re);
    assertRefused(await runHelper(f, f.images.good!, dir, { root: true }), re);
    await assertNothingLeft(f.images.good!, [dir]);
  };
  const restore = () => writeConfig(site, f.config);
  try {
    await Deno.chmod(site.configFile, 0o664);
    await refusedBoth(/shoal.json" must not be writable by group or others/);
    await restore();
    await Deno.chown(site.configFile, user.uid, user.gid);
    await refusedBoth(/shoal.json" must be owned by root/);
    await Deno.chown(site.configFile, 0, 0);
    await Deno.chmod(`${site.prefix}/libexec/shoal`, 0o775);
    await refusedBoth(/libexec\/shoal" must not be writable by group or others/);
    await Deno.chmod(`${site.prefix}/libexec/shoal`, 0o755);

    const mine = `${f.local}/runc`;
    await Deno.copyFile(RUNC, mine);
    await Deno.chown(mine, user.uid, user.gid);
    await writeConfig(site, { ...f.config, runtime: { runc: mine } });
    await refusedBoth(/runc" must be owned by root/);
    await Deno.remove(mine);
    await writeConfig(site, { ...f.config, runtime: { runc: "runc" } });
    await refusedBoth(/runc "runc" is not absolute/);

    await Deno.writeTextFile(site.configFile, '{"runDir": "/tmp",}');
    await refusedBoth(/invalid JSON at byte 18/);
    await Deno.writeTextFile(site.configFile, '{"runDir": "$XDG_RUNTIME_DIR/shoal"}');
    await refusedBoth(/unknown variable \$XDG_RUNTIME_DIR/);
    await Deno.writeTextFile(site.configFile, '{"helper": {"kernelMountUserImages": "yes"}}');
    await refusedBoth(/helper.kernelMountUserImages must be true or false/);
    await Deno.writeTextFile(site.configFile, '{"repositories": {"local": 7}}');
    await refusedBoth(/repositories.local must be a string/);
    await Deno.remove(site.configFile);
    await refusedBoth(/shoal.json" cannot be checked: No such file/);
  } finally {
    await Deno.chmod(`${site.prefix}/libexec/shoal`, 0o755);
    await restore();
    await Deno.chown(site.configFile, 0, 0);
  }

  // A setuid copy in a directory the user controls, next to a config of theirs.
  const evil = `${f.local}/evil-prefix`;
  await asUser(user, "mkdir", "-p", `${evil}/libexec/shoal`, `${evil}/etc`);
  await Deno.writeTextFile(`${evil}/etc/shoal.json`, "{}");
  await Deno.copyFile(site.helper, `${evil}/libexec/shoal/shoal-mount`);
  await Deno.chmod(`${evil}/libexec/shoal/shoal-mount`, 0o4755);
  const r = await runAs(user, `${evil}/libexec/shoal/shoal-mount`, ["check"]);
  assertRefused(r, /evil-prefix\/libexec\/shoal" must be owned by root/);
  // A directory above the file is not the admin's to chown: the installation moves.
  assert(!r.stderr.includes("chown"), r.stderr);
  assertMatch(r.stderr, /install shoal where only root can change the directories above it/);
  await Deno.remove(evil, { recursive: true });
});

Deno.test("the caller's environment has no effect; runc gets no privilege", async () => {
  const f = await fx();
  const { site, user } = f;
  const hostile = {
    LD_PRELOAD: `${f.local}/nothing.so`,
    LD_LIBRARY_PATH: f.local,
    HOME: "/root",
    USER: "root",
    LOGNAME: "root",
    PATH: f.local,
    XDG_RUNTIME_DIR: f.local,
    XDG_DATA_HOME: "/",
    XDG_CONFIG_HOME: f.local,
  };
  const clean = await helper(site, user, ["check"]);
  const dirty = await helper(site, user, ["check"], hostile);
  assertEquals([dirty.code, dirty.stdout, dirty.stderr], [0, clean.stdout, ""]);

  // runc's stand-in reports what the helper handed it.
  const fake = `${site.dir}/fake-runc`;
  await Deno.writeTextFile(
    fake,
    `#!/bin/sh
tr '\\0' '\\n' < /proc/$$/environ | sort
echo "ids $(id -u) $(id -g) $(id -G)"
grep -E '^(CapPrm|CapEff|CapAmb|NoNewPrivs)' /proc/$$/status | tr -s '\\t ' ' '
echo "args $*"
grep -c " $2/rootfs .* - overlay " /proc/$$/mountinfo
grep -c " $2/.mnt .* - tmpfs shoal .*size=1024k" /proc/$$/mountinfo
cat "$2/rootfs/etc/marker"
ls "$2/.mnt" 2>&1 >/dev/null | sed 's/.*: //'
`,
  );
  await Deno.chmod(fake, 0o755);
  await writeConfig(site, { ...f.config, runtime: { runc: fake } });
  try {
    const dir = await bundle(f, { args: ["true"], root: true });
    const r = await runHelper(f, f.images.good!, dir, {
      root: true,
      size: "1m",
      runc: ["x y", dir],
    }, hostile);
    assertEquals(r.code, 0, r.stderr);
    const xdg = `/run/user/${user.uid}`;
    let hasXdg = false;
    try {
      const st = await Deno.lstat(xdg);
      hasXdg = st.isDirectory && st.uid === user.uid;
    } catch { /* none */ }
    const groups = (await runAs(user, "id", ["-G"])).stdout.trim();
    assertEquals(
      r.stdout,
      [
        `HOME=${user.home}`,
        `LOGNAME=${user.name}`,
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        `USER=${user.name}`,
        ...(hasXdg ? [`XDG_RUNTIME_DIR=${xdg}`] : []),
        `ids ${user.uid} ${user.gid} ${groups}`,
        "CapPrm: 0000000000000000",
        "CapEff: 0000000000000000",
        "CapAmb: 0000000000000000",
        "NoNewPrivs: 0",
        `args x y ${dir}`,
        "1",
        "1",
        "central",
        "Permission denied",
        "",
      ].join("\n"),
    );
    await assertNothingLeft(f.images.good!, [dir]);
  } finally {
    await writeConfig(site, f.config);
  }
});

Deno.test("usage errors exit 2 with one line", async () => {
  const f = await fx();
  for (
    const args of [
      [],
      ["mount"],
      ["run", "--image", f.images.good!],
      ["run", "--image", f.images.good!, "--bundle", f.run],
      ["run", "--image", f.images.good!, "--bundle", f.run, "--"],
      ["run", "--image", f.images.good!, "--bundle", f.run, "--rooot", "--", "x"],
      ["run", "--image", f.images.good!, "--bundle", f.run, "--tmpfs-size", "1t", "--", "x"],
    ]
  ) assertRefused(await helper(f.site, f.user, args), /usage: shoal-mount run/, 2);
});

// ---------------------------------------------------------------- the watchdog

/** A sleep duration no other process has: it names a container's process in `ps`. */
const marker = () => String(100_000 + Math.floor(Math.random() * 800_000));

/** Sleepers a container starts in the background, as daemons do: none may outlive it. */
function daemons(tags: { plain: string; subuid: string; orphan: string; nested?: string }): string {
  return [
    ...(tags.nested === undefined ? [] : [
      // Orphaned in a user namespace of its own: no member of the container's, but the
      // helper's child once its parent is gone.
      `(unshare -U sleep ${tags.nested} >/dev/null 2>&1 &)`,
    ]),
    `sleep ${tags.plain} >/dev/null 2>&1 &`,
    // A process that switched to a subordinate uid: only the namespace's owner may kill it.
    `su -s /bin/sh -c 'exec sleep ${tags.subuid}' nobody >/dev/null 2>&1 &`,
    `i=0; while [ "$(stat -c %u /proc/$!)" != 65534 ] && [ $i -lt 200 ]; do sleep 0.01; i=$((i+1)); done`,
    "stat -c %u /proc/$!",
    // Double fork: its parent is gone at once, so it is nobody's child in the container.
    `(sleep ${tags.orphan} >/dev/null 2>&1 &)`,
  ].join("\n");
}

const sleepers = (tags: Record<string, string>) =>
  Object.values(tags).flatMap((t) => processesRunning(["sleep", t]));

/** Waits (bounded) until `pid` is dead: gone, or a zombie its parent has not reaped yet. */
async function assertGone(pid: number) {
  for (let i = 0; i < 50; i++) {
    try {
      if (processStatus(pid).State?.startsWith("Z")) return;
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return;
      throw err;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`process ${pid} is still there`);
}

Deno.test("when the container's main process exits, every process it left running goes too", async () => {
  const f = await fx();
  const tags = { plain: marker(), subuid: marker(), orphan: marker(), nested: marker() };
  for (const userns of [true, false]) {
    // Without --userns runc makes its own namespace: the orphans still reparent to the helper.
    const dir = await bundle(f, {
      args: ["sh", "-c", `${daemons(tags)}\necho started`],
      root: true,
      userns,
      hostPid: true,
    });
    const r = await runHelper(f, f.images.good!, dir, { root: true, userns });
    assertEquals([r.code, r.stdout], [0, "65534\nstarted\n"], r.stderr);
    assertNoError(r.stderr);
    assertEquals(sleepers(tags), []);
    await assertNothingLeft(f.images.good!, [dir]);
  }
});

/**
 * Runs `body`, then ends `child` if it still runs, so that a failing test
 * leaves nothing behind: SIGTERM first (the helper forwards it; a caller dies
 * of it and the helper then kills the container), SIGKILL after a second.
 */
async function killedAfter(child: Deno.ChildProcess, body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } finally {
    const kill = (signal: Deno.Signal) => {
      try {
        child.kill(signal);
      } catch { /* already gone */ }
    };
    kill("SIGTERM");
    const timer = setTimeout(() => kill("SIGKILL"), 1000);
    await child.status;
    clearTimeout(timer);
  }
}

/** runc with a host PID namespace warns about cgroups it lacks; no error may come. */
function assertNoError(stderr: string) {
  assert(!/shoal-mount: error|level=error/.test(stderr), stderr);
}

for (const signal of ["SIGKILL", "SIGTERM"] as const) {
  Deno.test(`${signal} to the helper's caller ends the container, its daemons and its mounts`, async () => {
    const f = await fx();
    const tags = { plain: marker(), subuid: marker(), orphan: marker(), main: marker() };
    const dir = await bundle(f, {
      args: ["sh", "-c", `${daemons(tags)}\necho ready\nexec sleep ${tags.main}`],
      root: true,
      userns: true,
      hostPid: true,
    });
    const id = `killed${++bundles}`;
    const args = helperArgs(f, f.images.good!, dir, {
      root: true,
      userns: true,
      runc: ["--root", `${f.run}/state`, "run", "--bundle", dir, id],
    });
    // The caller stands in for shoal: killed, it cannot forward anything.
    const caller = spawnAs(f.user, "sh", [
      "-c",
      '"$0" "$@" & echo $!; wait',
      f.site.helper,
      ...args,
    ]);
    const stderr = new Response(caller.stderr).text();
    const out = new Lines(caller.stdout);
    let helperPid = 0;
    await killedAfter(caller, async () => {
      helperPid = Number(await out.next());
      assertEquals([await out.next(), await out.next()], ["65534", "ready"]);
      // The last one is the main process, which execs sleep after saying "ready".
      assert(await eventually(() => Promise.resolve(sleepers(tags).length === 4)), "not started");

      const killed = performance.now();
      caller.kill(signal);
      // The end of the output: the helper, runc and every process of the container closed it.
      assertEquals(await out.rest(3000), "");
      const took = performance.now() - killed;
      assert(took < 2000, `the container took ${took} ms to go`);
      assertEquals((await caller.status).signal, signal);
    });
    assertNoError(await stderr);
    assertEquals(sleepers(tags), []);
    await assertGone(helperPid);
    await assertNothingLeft(f.images.good!, [dir]);
    // runc saw its container end and removed its state: `runc list` shows no stale entry.
    assertEquals(await Deno.stat(`${f.run}/state/${id}`).catch(() => null), null);
  });
}

/** The helper run directly (as shoal runs it), its output read line by line. */
function spawnHelper(f: Fixture, dir: string, runc?: string[]) {
  const args = helperArgs(f, f.images.good!, dir, { root: true, userns: true, runc });
  const child = spawnAs(f.user, f.site.helper, args);
  return { child, out: new Lines(child.stdout), stderr: new Response(child.stderr).text() };
}

Deno.test("signals sent to the helper reach the container's process", async () => {
  const f = await fx();
  const traps = [
    "trap 'echo got USR1' USR1",
    "trap 'echo got USR2' USR2",
    "trap 'echo got TERM; exit 3' TERM",
    "trap 'echo got INT; exit 4' INT",
    "trap 'echo got HUP; exit 5' HUP",
    "trap 'echo got QUIT; exit 6' QUIT",
    "echo ready",
    "while :; do sleep 0.02; done",
  ].join("\n");
  const cases = [["SIGTERM", 3], ["SIGINT", 4], ["SIGHUP", 5], ["SIGQUIT", 6]] as const;
  for (const [signal, code] of cases) {
    const dir = await bundle(f, {
      args: ["sh", "-c", traps],
      root: true,
      userns: true,
      hostPid: true,
    });
    const { child, out, stderr } = spawnHelper(f, dir);
    await killedAfter(child, async () => {
      assertEquals(await out.next(), "ready");
      child.kill("SIGUSR1");
      assertEquals(await out.next(), "got USR1");
      child.kill("SIGUSR2");
      assertEquals(await out.next(), "got USR2");
      child.kill(signal);
      assertEquals(await out.rest(), `got ${signal.slice(3)}\n`);
      assertEquals((await child.status).code, code);
    });
    assertNoError(await stderr);
    await assertNothingLeft(f.images.good!, [dir]);
  }
});

/** Runs the helper with `runc` replaced by a script of the test's. */
async function withFakeRunc<T>(f: Fixture, script: string, body: () => Promise<T>): Promise<T> {
  const fake = `${f.site.dir}/fake-runc-${++bundles}`;
  await Deno.writeTextFile(fake, `#!/bin/sh\n${script}\n`);
  await Deno.chmod(fake, 0o755);
  await writeConfig(f.site, { ...f.config, runtime: { runc: fake } });
  try {
    return await body();
  } finally {
    await writeConfig(f.site, f.config);
    await Deno.remove(fake);
  }
}

Deno.test("the container's exit status is the helper's; a signal death is 128+N", async () => {
  const f = await fx();
  const cases: [string[], number, RegExp][] = [
    [["sh", "-c", "exit 7"], 7, /^(?!.*level=error)/s],
    [["sh", "-c", "kill -KILL $$"], 137, /^(?!.*level=error)/s],
    // runc's own failure: shoal turns it into 127 and one line.
    [["/no/such/program"], 1, /level=error.*no such file or directory/],
  ];
  for (const [args, code, stderr] of cases) {
    const dir = await bundle(f, { args, root: true, userns: true, hostPid: true });
    const r = await runHelper(f, f.images.good!, dir, { root: true, userns: true });
    assertEquals(r.code, code, r.stderr);
    assertMatch(r.stderr, stderr);
    await assertNothingLeft(f.images.good!, [dir]);
  }
  // runc itself killed by a signal.
  const dir = await bundle(f, { args: ["true"], root: true });
  const r = await withFakeRunc(f, "kill -TERM $$", () => runHelper(f, f.images.good!, dir));
  assertEquals([r.code, r.stderr], [143, ""]);
  await assertNothingLeft(f.images.good!, [dir]);
});

Deno.test("the caller's extra file descriptors reach the container (--preserve-fds), no other", async () => {
  const f = await fx();
  const file = `${f.run}/pmi-${++bundles}`;
  await Deno.writeTextFile(file, "through fd 3\n");
  await Deno.chown(file, f.user.uid, f.user.gid);
  const withFd3 = (cmd: string, args: string[]) =>
    runAs(f.user, "sh", ["-c", 'f=$1; shift; exec "$@" 3<"$f"', "sh", file, cmd, ...args]);

  const dir = await bundle(f, { args: ["sh", "-c", "cat <&3"], root: true, userns: true });
  const runc = ["--root", `${f.run}/state`, "run", "--preserve-fds", "1", "--bundle", dir];
  const r = await withFd3(
    f.site.helper,
    helperArgs(f, f.images.good!, dir, {
      root: true,
      userns: true,
      runc: [...runc, `c${++bundles}`],
    }),
  );
  assertEquals([r.code, r.stdout], [0, "through fd 3\n"], r.stderr);
  await assertNothingLeft(f.images.good!, [dir]);

  // runc gets the caller's descriptors and none of the helper's own.
  const listFds = "exec ls /proc/self/fd";
  const callers = await withFd3("sh", ["-c", listFds]);
  const runcs = await withFakeRunc(
    f,
    listFds,
    () => withFd3(f.site.helper, helperArgs(f, f.images.good!, dir, { root: true })),
  );
  assertEquals([runcs.code, runcs.stdout], [0, callers.stdout], runcs.stderr);
  assertStringIncludes(callers.stdout, "\n3\n");
  await Deno.remove(file);
});

Deno.test("while the container runs, the helper holds no privilege and the caller owns the namespace", async () => {
  const f = await fx();
  const [subuid, main] = [marker(), marker()];
  const dir = await bundle(f, {
    args: [
      "sh",
      "-c",
      `${daemons({ plain: marker(), subuid, orphan: marker() })}
       echo $$; exec sleep ${main}`,
    ],
    root: true,
    userns: true,
    hostPid: true,
  });
  const { child, out, stderr } = spawnHelper(f, dir);
  await killedAfter(child, async () => {
    assertEquals(await out.next(), "65534");
    const container = Number(await out.next());
    // su has taken uid 65534 before its shell has become `sleep`.
    assert(
      await eventually(() => Promise.resolve(processesRunning(["sleep", subuid]).length > 0)),
      "the sleeper runs",
    );
    const sleeper = processesRunning(["sleep", subuid])[0]!;

    const status = processStatus(child.pid);
    const { uid, gid } = f.user;
    assertEquals(
      [status.Uid, status.Gid, status.CapInh, status.CapPrm, status.CapEff, status.CapAmb],
      [
        `${uid} ${uid} ${uid} ${uid}`,
        `${gid} ${gid} ${gid} ${gid}`,
        ...Array(4).fill("0".repeat(16)),
      ],
    );
    // Only the owner of a user namespace may enter it and kill its processes of other uids.
    const entered = await runAs(f.user, "nsenter", [
      "--user",
      "--preserve-credentials",
      "-t",
      String(container),
      "readlink",
      "/proc/self/ns/user",
    ]);
    assertEquals([entered.code, entered.stdout], [
      0,
      `${await Deno.readLink(`/proc/${container}/ns/user`)}\n`,
    ], entered.stderr);
    assertEquals(processStatus(sleeper).Uid?.split(" ")[0], String(f.user.subuid.start + 65533));
    const killed = await runAs(f.user, "kill", ["-KILL", String(sleeper)]);
    assertEquals(killed.code, 0, killed.stderr);
    await assertGone(sleeper);

    child.kill("SIGTERM");
    assertEquals(await out.rest(), "");
    assertEquals((await child.status).code, 143);
  });
  assertNoError(await stderr);
  assertEquals(processesRunning(["sleep", main]), []);
  await assertNothingLeft(f.images.good!, [dir]);
});

Deno.test("the root filesystem is nosuid; the writable layer has the site's size, and no more", async () => {
  const f = await fx();
  const dir = await bundle(f, {
    args: ["sh", "-c", "grep ' / / ' /proc/self/mountinfo"],
    root: true,
  });
  const r = await runHelper(f, f.images.good!, dir, { root: true });
  assertEquals(r.code, 0, r.stderr);
  const options = r.stdout.split(" ")[5]!.split(",");
  assert(options.includes("nosuid") && options.includes("nodev"), r.stdout);
  await assertNothingLeft(f.images.good!, [dir]);

  // The tmpfs as the helper leaves it for runc.
  const sizeOf = (opts: RunOpts) =>
    withFakeRunc(
      f,
      `grep " $1/.mnt .* - tmpfs shoal " /proc/$$/mountinfo | grep -o 'size=[0-9]*k'`,
      () => runHelper(f, f.images.good!, dir, { ...opts, runc: [dir] }),
    );
  const byDefault = await sizeOf({});
  assertEquals([byDefault.code, byDefault.stdout], [0, "size=1048576k\n"], byDefault.stderr);
  const site = { ...f.config, helper: { writableTmpfsSize: "64m" } };
  const withSite = (body: () => Promise<void>) =>
    withFakeRunc(f, "true", async () => {
      await writeConfig(f.site, { ...site, runtime: { runc: RUNC } });
      await body();
    });
  await withSite(async () => {
    const check = await helper(f.site, f.user, ["check"]);
    assertStringIncludes(check.stdout, "writable layer size: 64m\n");
    assertRefused(
      await runHelper(f, f.images.good!, dir, { size: "128m" }),
      /--tmpfs-size 128m is more than this site's writable layers may hold \(helper.writableTmpfsSize 64m\)/,
    );
  });
  await assertNothingLeft(f.images.good!, [dir]);
});

Deno.test("a process the user brings into the container from outside goes with it too", async () => {
  const f = await fx();
  const [entered, main] = [marker(), marker()];
  const dir = await bundle(f, {
    args: ["sh", "-c", `echo $$; exec sleep ${main}`],
    root: true,
    userns: true,
    hostPid: true,
  });
  const { child, out, stderr } = spawnHelper(f, dir);
  await killedAfter(child, async () => {
    const container = Number(await out.next());
    // Started outside, by the owner of the container's namespace: no child of the helper's,
    // found only as a member of the namespace.
    const joined = await runAs(f.user, "sh", [
      "-c",
      `setsid -f nsenter --user --mount --preserve-credentials -t ${container} sleep ${entered} ` +
      "</dev/null >/dev/null 2>&1",
    ]);
    assertEquals(joined.code, 0, joined.stderr);
    assert(
      await eventually(() => Promise.resolve(processesRunning(["sleep", entered]).length > 0)),
      "the entered sleeper runs",
    );
    const killed = await runAs(f.user, "kill", [
      "-KILL",
      String(processesRunning(["sleep", main])[0]),
    ]);
    assertEquals(killed.code, 0, killed.stderr);
    assertEquals((await child.status).code, 137);
  });
  assertNoError(await stderr);
  assertEquals(processesRunning(["sleep", entered]), []);
  await assertNothingLeft(f.images.good!, [dir]);
});

Deno.test("finished runs whose namespaces are held open count against the user's loop devices", async () => {
  const f = await fx();
  const user = await testUser("shoal-attacker", false);
  await Deno.mkdir(`${f.site.dir}/run/${user.name}`, { mode: 0o700 }).catch(() => {});
  await Deno.chown(`${f.site.dir}/run/${user.name}`, user.uid, user.gid);
  const limit = 2;
  await writeConfig(f.site, { ...f.config, helper: { maxLoopDevicesPerUser: limit } });
  const holders: Deno.ChildProcess[] = [];
  const run = async (args: string[]) => {
    const dir = await bundle(f, { args, root: true, userns: true, hostPid: true }, user);
    return { dir, args: helperArgs(f, f.images.good!, dir, { root: true, userns: true, user }) };
  };
  try {
    // Each run ends, but a process of the user's keeps its mount namespace (and so its loop
    // device) by a /proc/PID/ns/mnt descriptor.
    for (let i = 0; i < limit; i++) {
      const { args } = await run(["sh", "-c", "echo $$; exec sleep 1000"]);
      const child = spawnAs(user, f.site.helper, args);
      const out = new Lines(child.stdout);
      await killedAfter(child, async () => {
        const pid = await out.next();
        const holder = spawnAs(user, "sh", [
          "-c",
          'exec 3</proc/"$1"/ns/mnt && echo pinned && exec sleep 1000',
          "sh",
          pid!,
        ]);
        holders.push(holder);
        assertEquals(await new Lines(holder.stdout).next(), "pinned");
      });
    }
    const refused = await helper(f.site, user, (await run(["true"])).args);
    assertRefused(
      refused,
      new RegExp(
        `you hold ${limit} loop devices through shoal-mount \\(limit ${limit}\\) ` +
          "\\(end the processes that keep finished containers' namespaces open\\)",
      ),
    );
  } finally {
    for (const h of holders) {
      h.kill("SIGKILL");
      await h.status;
    }
    await writeConfig(f.site, f.config);
  }
  // Released, the namespaces go with their loop devices, and runs work again.
  await writeConfig(f.site, { ...f.config, helper: { maxLoopDevicesPerUser: limit } });
  try {
    await assertNothingLeft(f.images.good!, []);
    const again = await run(["true"]);
    const r = await helper(f.site, user, again.args);
    assertEquals(r.code, 0, r.stderr);
    await assertNothingLeft(f.images.good!, [again.dir]);
  } finally {
    await writeConfig(f.site, f.config);
  }
});
