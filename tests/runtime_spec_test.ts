/**
 * The OCI runtime config shoal builds for a run: what it asks runc for, checked
 * field by field, against `runc spec --rootless`, and by running it with real
 * runc as the unprivileged test user.
 */
import { runRequest } from "./support/request.ts";
import {
  assert,
  assertEquals,
  assertMatch,
  assertRejects,
  assertThrows,
} from "./support/assert.ts";
import { runCommand } from "./support/shoal.ts";
import { runAs, type TestUser, testUser } from "./support/users.ts";
import { ConfigError, UsageError } from "../mod/errors.ts";
import { type SiteConfig, siteConfigSchema } from "../mod/config/schema.ts";
import { parseMountOption, parseVolumeOption, withLockedFlags } from "../mod/runtime/mounts.ts";
import { statPath } from "../mod/sys/dirfd.ts";
import { parseEnvOption } from "../mod/runtime/env.ts";
import { idMap } from "../mod/runtime/idmap.ts";
import { parseDeviceOption } from "../mod/runtime/devices.ts";
import { type OciMount, specProblems } from "../mod/runtime/oci.ts";
import {
  buildBundleSpec,
  containerArgs,
  type HostInfo,
  type ImageInfo,
  INIT_PATH,
  parseAnnotationOption,
  ROOT_CAPABILITIES,
  type RunRequest,
  type UserInfo,
} from "../mod/runtime/spec.ts";

const IMAGE: ImageInfo = {
  env: ["PATH=/usr/local/bin:/usr/bin:/bin", "IMG=image"],
  entrypoint: [],
  cmd: ["sh"],
  workdir: "",
  user: "",
  passwd: "root:x:0:0:root:/root:/bin/sh\n_apt:x:42:65534::/nonexistent:/usr/sbin/nologin\n",
  group: "root:x:0:\nusers:x:100:\n",
};

const USER: UserInfo = {
  name: "alice",
  uid: 1001,
  gid: 1001,
  groupName: "alice",
  gecos: "Alice",
  home: "/home/alice",
  shell: "/bin/sh",
  groups: [{ gid: 1001, name: "alice" }, { gid: 2000, name: "proj" }],
  subuid: [{ start: 100000, count: 65536 }],
  subgid: [{ start: 100000, count: 65536 }],
  env: { PATH: "/host/bin", HOME: "/home/alice", FROMHOST: "h" },
  umask: 0o027,
};

const HOST: HostInfo = {
  hostname: "node7",
  mqueue: false,
  userns: { kind: "create" },
  bundle: "/tmp",
};

const request = runRequest;

function config(file: Record<string, unknown> = {}): SiteConfig {
  return siteConfigSchema.parse(file);
}

function build(over: Partial<RunRequest> = {}, cfg = config(), user = USER, host = HOST) {
  return buildBundleSpec(request(over), IMAGE, cfg, user, host);
}

Deno.test("--root gets exactly the listed capabilities; the default gets none", async () => {
  const root = (await build({ root: true })).spec.process;
  assertEquals(ROOT_CAPABILITIES.length, 13);
  for (const set of ["bounding", "effective", "permitted"] as const) {
    assertEquals([...root.capabilities[set]].sort(), [...ROOT_CAPABILITIES].sort());
  }
  assertEquals(root.capabilities.inheritable, []);
  assertEquals(root.capabilities.ambient, []);
  assertEquals(root.user, { uid: 0, gid: 0, umask: 0o027 });
  assert(root.noNewPrivileges);
  const plain = (await build()).spec.process;
  assertEquals(Object.values(plain.capabilities).flat(), []);
  assertEquals(plain.user, { uid: 1001, gid: 1001, umask: 0o027 });
});

Deno.test("mounts: runc's rootless defaults, host /dev/shm, private /tmp, then site, user, devices", async () => {
  const dir = await Deno.makeTempDir({ prefix: "shoal-spec-" });
  try {
    const cfg = config({ mounts: [{ source: dir, destination: "/site" }] });
    const { spec } = await build(
      {
        mounts: [parseMountOption(`type=bind,src=${dir},dst=/data,ro`)],
        devices: [parseDeviceOption("/dev/null:/dev/mynull")],
      },
      cfg,
    );
    assertEquals(spec.mounts.map((m) => [m.destination, m.type, m.source]), [
      ["/proc", "bind", "/proc"],
      ["/dev", "tmpfs", "tmpfs"],
      ["/dev/pts", "devpts", "devpts"],
      ["/dev/shm", "bind", "/dev/shm"],
      ["/sys", "bind", "/sys"],
      ["/tmp", "tmpfs", "tmpfs"],
      ["/etc/resolv.conf", "bind", "/etc/resolv.conf"],
      ["/etc/hosts", "bind", "/etc/hosts"],
      ["/etc/passwd", "bind", "/tmp/passwd"],
      ["/etc/group", "bind", "/tmp/group"],
      ["/home/alice", "tmpfs", "tmpfs"],
      ["/site", "bind", dir],
      ["/data", "bind", dir],
      ["/dev/mynull", "bind", "/dev/null"],
    ]);
    const opts = (dest: string) => spec.mounts.find((m) => m.destination === dest)!.options!;
    assert(!opts("/dev/pts").some((o) => o.startsWith("gid=")), "no gid= on devpts when rootless");
    for (const o of ["rbind", "ro", "nosuid", "nodev", "noexec"]) assert(opts("/sys").includes(o));
    for (const o of ["ro", "nosuid", "nodev"]) assert(opts("/site").includes(o), `site ${o}`);
    for (const o of ["ro", "rbind", "nosuid", "nodev"]) assert(opts("/data").includes(o));
    assert(opts("/etc/hosts").includes("ro"));
    assert(opts("/tmp").includes("mode=1777"));
    assert(!opts("/dev/mynull").includes("nodev"), "a device mount must allow device access");
    assertEquals(spec.linux.namespaces.map((n) => n.type), ["uts", "mount", "user"]);
    assertEquals(spec.hostname, "node7");
    assertEquals(spec.root, { path: "rootfs", readonly: false });
    assertEquals(specProblems(spec), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--pid=private gets its own pid namespace and a fresh /proc", async () => {
  const { spec } = await build({ pid: "private" });
  assertEquals(spec.linux.namespaces.map((n) => n.type), ["pid", "uts", "mount", "user"]);
  assertEquals(spec.mounts[0], {
    destination: "/proc",
    type: "proc",
    source: "proc",
    options: ["nosuid", "noexec", "nodev"],
  });
});

Deno.test("the command follows Docker's ENTRYPOINT/CMD rules", () => {
  const image = (entrypoint: string[], cmd: string[]): ImageInfo => ({ ...IMAGE, entrypoint, cmd });
  const cases: [ImageInfo, Partial<RunRequest>, string[]][] = [
    [image([], ["bash"]), {}, ["bash"]],
    [image([], ["bash"]), { command: ["ls", "-l"] }, ["ls", "-l"]],
    [image(["/ep", "-x"], ["def"]), {}, ["/ep", "-x", "def"]],
    [image(["/ep"], ["def"]), { command: ["arg"] }, ["/ep", "arg"]],
    [image(["/ep"], ["def"]), { entrypoint: "/other" }, ["/other"]],
    [image(["/ep"], ["def"]), { entrypoint: "/other", command: ["a"] }, ["/other", "a"]],
    [image(["/ep"], ["def"]), { entrypoint: "", command: ["ls"] }, ["ls"]],
  ];
  for (const [img, over, want] of cases) assertEquals(containerArgs(request(over), img), want);
  assertThrows(
    () => containerArgs(request({ entrypoint: "" }), image(["/ep"], ["def"])),
    UsageError,
    "no command to run",
  );
  assertThrows(() => containerArgs(request(), image([], [])), UsageError, "no command to run");
  // Docker's: `--entrypoint /bin/sh IMG -c 'echo hi'` is `/bin/sh -c 'echo hi'`.
  assertEquals(
    containerArgs(request({ entrypoint: "/bin/sh", command: ["-c", "echo hi"] }), image([], [])),
    ["/bin/sh", "-c", "echo hi"],
  );
});

Deno.test("an empty command name is a usage error that says so, not an invalid config", () => {
  const image = (entrypoint: string[], cmd: string[]): ImageInfo => ({ ...IMAGE, entrypoint, cmd });
  for (
    const over of [{ command: [""] }, { command: ["", "x"] }, { entrypoint: "", command: [""] }]
  ) {
    assertThrows(
      () => containerArgs(request(over), image([], ["sh"])),
      UsageError,
      "the command to run has an empty name: '' given as the program to run",
    );
  }
  assertThrows(
    () => containerArgs(request(), image([""], [])),
    UsageError,
    "the image's ENTRYPOINT or CMD starts with ''",
  );
  // An empty argument after a program is an argument.
  assertEquals(containerArgs(request({ command: ["echo", ""] }), image([], [])), ["echo", ""]);
});

Deno.test("$HOME: a tmpfs of the user's at their home unless a mount covers it; root keeps /root", async () => {
  const home = (spec: { mounts: OciMount[] }) =>
    spec.mounts.filter((m) => m.destination === "/home/alice");
  assertEquals(home((await build()).spec), [{
    destination: "/home/alice",
    type: "tmpfs",
    source: "tmpfs",
    options: ["nosuid", "nodev", "mode=700", "uid=1001", "gid=1001"],
  }]);
  const env = (await build()).spec.process.env;
  assert(env.includes("HOME=/home/alice"), env.join(" "));
  const root = (await build({ root: true })).spec;
  assert(!root.mounts.some((m) => m.type === "tmpfs" && m.destination.startsWith("/root")));
  assert(root.process.env.includes("HOME=/root"));
  const dir = await Deno.makeTempDir({ prefix: "shoal-spec-home-" });
  try {
    // A -v at or above the home: the user's choice stands.
    for (const dst of ["/home/alice", "/home"]) {
      const { spec } = await build({ mounts: [parseVolumeOption(`${dir}:${dst}`)] });
      assertEquals(home(spec).map((m) => m.type), dst === "/home" ? [] : ["bind"]);
    }
    // One below it lands on the tmpfs, mounted first.
    const below = (await build({ mounts: [parseVolumeOption(`${dir}:/home/alice/data`)] })).spec;
    const order = below.mounts.map((m) => m.destination);
    assert(order.indexOf("/home/alice") < order.indexOf("/home/alice/data"), order.join(" "));
    // A home under /tmp is in the container's private /tmp already.
    assertEquals(
      (await build({}, config(), { ...USER, home: "/tmp/alice" })).spec.mounts
        .filter((m) => m.destination.startsWith("/tmp/")),
      [],
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("site mounts expand $HOME and $USER to the caller's, so a site can bind real homes", async () => {
  const base = await Deno.makeTempDir({ prefix: "shoal-spec-site-" });
  try {
    await Deno.mkdir(`${base}/home/alice`, { recursive: true });
    await Deno.mkdir(`${base}/scratch/alice`, { recursive: true });
    const user = { ...USER, home: `${base}/home/alice` };
    const cfg = config({
      mounts: [
        { source: "$HOME", destination: "${HOME}", readonly: false },
        { source: `${base}/scratch/$USER`, destination: "/scratch/${USER}" },
      ],
    });
    const { spec } = await build({}, cfg, user);
    const binds = spec.mounts.filter((m) => m.source.startsWith(base));
    assertEquals(binds.map((m) => [m.source, m.destination]), [
      [user.home, user.home],
      [`${base}/scratch/alice`, "/scratch/alice"],
    ]);
    assert(!spec.mounts.some((m) => m.type === "tmpfs" && m.destination === user.home));
    assertThrows(
      () => config({ mounts: [{ source: "/scratch/$SCRATCH", destination: "/s" }] }),
      Error,
      "may use $HOME and $USER, no other variable",
    );
  } finally {
    await Deno.remove(base, { recursive: true });
  }
});

Deno.test("cwd: -w must be absolute, else the image's WORKDIR, else /", async () => {
  assertEquals((await build()).spec.process.cwd, "/");
  assertEquals((await build({ workdir: "/work//x/" })).spec.process.cwd, "/work/x/");
  const img = { ...IMAGE, workdir: "/app" };
  assertEquals(
    (await buildBundleSpec(request(), img, config(), USER, HOST)).spec.process.cwd,
    "/app",
  );
  await assertRejects(
    () => build({ workdir: "work" }),
    UsageError,
    "--workdir work: must be an absolute path",
  );
});

Deno.test("environment: host, identity, image, site, -e; HOME follows the identity", async () => {
  const cfg = config({ environment: { append: { PATH: "/site/bin" }, set: { SITE: "s" } } });
  const env = (await build({ env: [parseEnvOption("X=1"), parseEnvOption("FROMHOST")] }, cfg))
    .spec.process.env;
  assertEquals(env, [
    "PATH=/usr/local/bin:/usr/bin:/bin:/site/bin",
    "HOME=/home/alice",
    "FROMHOST=h",
    "USER=alice",
    "LOGNAME=alice",
    "IMG=image",
    "SITE=s",
    "X=1",
  ]);
  const rootEnv = (await build({ root: true })).spec.process.env;
  assert(rootEnv.includes("HOME=/root") && rootEnv.includes("USER=root"));
});

Deno.test("user namespace: created from host-id mappings, inherited, or joined", async () => {
  const flat = (await build()).spec.linux;
  assertEquals(flat.uidMappings, [
    { containerID: 0, hostID: 100000, size: 1001 },
    { containerID: 1001, hostID: 1001, size: 1 },
    { containerID: 1002, hostID: 101001, size: 64535 },
  ]);
  assertEquals(flat.namespaces.at(-1), { type: "user" });
  // Inherited: runc runs in a namespace with this very mapping; the container stays in it.
  const inherit = (await build({}, config(), USER, { ...HOST, userns: { kind: "inherit" } }))
    .spec.linux;
  assertEquals([inherit.uidMappings, inherit.gidMappings], [undefined, undefined]);
  assert(!inherit.namespaces.some((n) => n.type === "user"));
  // Joined (the helper's): the mappings only tell runc who owns its stdio and exec fifo.
  const join = { ...HOST, userns: { kind: "join" as const, path: "/run/b/userns" } };
  const joined = (await build({}, config(), USER, join)).spec.linux;
  assertEquals(joined.namespaces.at(-1), { type: "user", path: "/run/b/userns" });
  assertEquals(joined.uidMappings, [
    { containerID: 0, hostID: 1001, size: 1 },
    { containerID: 1001, hostID: 1001, size: 1 },
  ]);
  const rootJoined = (await build({ root: true }, config(), USER, join)).spec.linux;
  assertEquals(rootJoined.gidMappings, [{ containerID: 0, hostID: 1001, size: 1 }]);
});

Deno.test("identity files: bind-mounted read-only for the user, the image's own for --root", async () => {
  const keep = (await build()).spec.mounts.filter((m) => m.destination.startsWith("/etc/"));
  assertEquals(keep.slice(2).map((m) => [m.destination, m.source, m.options?.includes("ro")]), [
    ["/etc/passwd", "/tmp/passwd", true],
    ["/etc/group", "/tmp/group", true],
  ]);
  const root = (await build({ root: true })).spec.mounts;
  assert(!root.some((m) => m.destination === "/etc/passwd" || m.destination === "/etc/group"));
});

Deno.test("without subordinate ranges: a single mapping and a warning", async () => {
  const lone = { ...USER, subuid: [], subgid: [] };
  const r = await build({ root: true }, config(), lone);
  assertEquals(r.spec.linux.uidMappings, [{ containerID: 0, hostID: 1001, size: 1 }]);
  assertEquals(r.warnings.length, 1);
  assertMatch(
    r.warnings[0]!,
    /^no \/etc\/subuid or \/etc\/subgid range for alice: .*package managers .* may fail/,
  );
  assertEquals((await build()).warnings, []);
});

Deno.test("passwd and group: caller added, visible supplementary groups named", async () => {
  // A site that gives alice's project gid 2000 as a subordinate gid makes it visible.
  const user = { ...USER, subgid: [{ start: 100000, count: 1000 }, { start: 2000, count: 1 }] };
  const r = await build({}, config(), user);
  assertEquals(
    r.passwd,
    "alice:x:1001:1001:Alice:/home/alice:/bin/sh\nroot:x:0:0:root:/root:/bin/sh\n" +
      "_apt:x:42:65534::/nonexistent:/usr/sbin/nologin\n",
  );
  assertEquals(r.group, "alice:x:1001:\nroot:x:0:\nusers:x:100:\nproj:x:1000:alice\n");
  // Groups outside the mapping show as nogroup inside; they get no entry.
  assertEquals((await build()).group, "alice:x:1001:\nroot:x:0:\nusers:x:100:\n");
  const root = await build({ root: true });
  assertEquals(root.passwd, IMAGE.passwd);
  assertEquals(root.group, IMAGE.group);
});

Deno.test("site mounts and devices: optional ones skipped, user mounts cannot replace them", async () => {
  const dir = await Deno.makeTempDir({ prefix: "shoal-spec-" });
  try {
    const cfg = config({
      mounts: [
        { source: `${dir}/absent`, destination: "/opt/x", optional: true },
        { source: dir, destination: "/scratch", readonly: false },
      ],
      devices: [{ path: `${dir}/nodev` }, { path: "/dev/zero", containerPath: "/dev/z" }],
      forbiddenMountDestinations: ["/opt/admin"],
    });
    const r = await build({}, cfg);
    assertEquals(r.warnings, [
      `site mount ${dir}/absent skipped: it does not exist on this node`,
      `site device ${dir}/nodev skipped: not present on this node`,
    ]);
    const scratch = r.spec.mounts.find((m) => m.destination === "/scratch")!;
    assert(!scratch.options!.includes("ro"));
    assert(r.spec.mounts.some((m) => m.destination === "/dev/z" && m.source === "/dev/zero"));
    await assertRejects(
      () => build({ mounts: [parseVolumeOption(`${dir}:/scratch`)] }, cfg),
      UsageError,
      `/scratch is already the destination of site mount ${dir}`,
    );
    await assertRejects(
      () => build({ mounts: [parseVolumeOption(`${dir}:/opt/admin/x`)] }, cfg),
      UsageError,
      "(/opt/admin is protected)",
    );
    await assertRejects(
      () => build({ devices: [parseDeviceOption("/dev/null:/dev/shm/null")] }, cfg),
      UsageError,
      "(/dev/shm is protected)",
    );
    await assertRejects(
      () => build({}, config({ mounts: [{ source: `${dir}/absent`, destination: "/x" }] })),
      ConfigError,
      `site mount source ${dir}/absent does not exist`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--init runs the installation's init as PID 1 in front of the command", async () => {
  const withInit = (init?: string) => ({ ...HOST, init });
  const { spec } = await build(
    { init: true, command: ["sleep", "1"] },
    config(),
    USER,
    withInit("/usr/bin/catatonit"),
  );
  assertEquals(spec.process.args, [INIT_PATH, "--", "sleep", "1"]);
  const init = spec.mounts.at(-1)!;
  assertEquals([init.destination, init.source], [INIT_PATH, "/usr/bin/catatonit"]);
  await assertRejects(
    () => build({ init: true }, config(), USER, withInit("/nonexistent/tini")),
    ConfigError,
    "--init: the init program /nonexistent/tini does not exist",
  );
  await assertRejects(
    () => build({ init: true }, config(), USER, withInit()),
    ConfigError,
    "--init: no init program found (catatonit or tini)",
  );
});

Deno.test("seccomp profile from the site config; annotations", async () => {
  const dir = await Deno.makeTempDir({ prefix: "shoal-spec-" });
  try {
    const profile = { defaultAction: "SCMP_ACT_ALLOW", syscalls: [] };
    await Deno.writeTextFile(`${dir}/ok.json`, JSON.stringify(profile));
    await Deno.writeTextFile(`${dir}/bad.json`, "{");
    await Deno.writeTextFile(`${dir}/docker.json`, JSON.stringify({ syscalls: [] }));
    const r = await build(
      { annotations: Object.fromEntries([parseAnnotationOption("a.b/c=x=y")]) },
      config({ seccompProfile: `${dir}/ok.json` }),
    );
    assertEquals(r.spec.linux.seccomp, profile);
    assertEquals(r.spec.annotations, { "a.b/c": "x=y" });
    assertEquals((await build()).spec.annotations, undefined);
    await assertRejects(
      () => build({}, config({ seccompProfile: `${dir}/bad.json` })),
      ConfigError,
      `seccomp profile ${dir}/bad.json`,
    );
    await assertRejects(
      () => build({}, config({ seccompProfile: `${dir}/docker.json` })),
      ConfigError,
      'not an OCI linux.seccomp object (needs "defaultAction")',
    );
    assertThrows(
      () => parseAnnotationOption("=v"),
      UsageError,
      "--annotation =v: expected KEY=VALUE",
    );
    assertThrows(() => parseAnnotationOption("k"), UsageError, "expected KEY=VALUE");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("specProblems finds what the runtime-spec requires", async () => {
  const { spec } = await build();
  const broken = structuredClone(spec);
  broken.process.cwd = "rel";
  broken.process.args = [];
  broken.linux.namespaces = broken.linux.namespaces.filter((n) => n.type !== "uts");
  broken.mounts.push({ destination: "x", type: "bind", source: "/x" });
  assertEquals(specProblems(broken), [
    "process.args needs a command",
    "process.cwd must be absolute",
    "mount destination x must be absolute",
    "hostname needs a uts namespace",
  ]);
});

Deno.test("matches `runc spec --rootless` where shoal keeps runc's defaults", async () => {
  const dir = await Deno.makeTempDir({ prefix: "shoal-runcspec-" });
  try {
    const r = await runCommand("runc", ["spec", "--rootless", "--bundle", dir]);
    assertEquals(r.code, 0, r.stderr);
    const runc = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
    const { spec } = await build({ root: true });
    assertEquals(spec.linux.maskedPaths, runc.linux.maskedPaths);
    assertEquals(spec.linux.readonlyPaths, runc.linux.readonlyPaths);
    assertEquals(spec.ociVersion, runc.ociVersion);
    const find = (mounts: OciMount[], d: string) => mounts.find((m) => m.destination === d);
    for (const d of ["/dev", "/dev/pts"]) assertEquals(find(spec.mounts, d), find(runc.mounts, d));
    assertEquals(
      [...find(spec.mounts, "/sys")!.options!].sort(),
      [...find(runc.mounts, "/sys")!.options!].sort(),
    );
    // runc's own rootless capabilities are a subset of --root's.
    for (const c of runc.process.capabilities.bounding) assert(ROOT_CAPABILITIES.includes(c));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// ---- real runc, as the unprivileged test user ----

const TOOLS = ["sh", "id", "grep", "stat", "cat", "ls", "touch", "head", "echo", "test"];

/** A bundle directory with a busybox rootfs owned by `rootOwner` (container root's host id). */
async function makeBundle(user: TestUser, rootOwner: number): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "shoal-runc-" });
  await Deno.mkdir(`${dir}/bundle/rootfs/bin`, { recursive: true });
  await Deno.mkdir(`${dir}/bundle/rootfs/etc`);
  await Deno.mkdir(`${dir}/bundle/rootfs/tmp`);
  await Deno.mkdir(`${dir}/state`);
  await Deno.mkdir(`${dir}/data`);
  await Deno.copyFile("/bin/busybox", `${dir}/bundle/rootfs/bin/busybox`);
  for (const t of TOOLS) await Deno.symlink("busybox", `${dir}/bundle/rootfs/bin/${t}`);
  const chown = await runCommand("chown", [
    "-R",
    `${rootOwner}:${rootOwner}`,
    `${dir}/bundle/rootfs`,
  ]);
  assertEquals(chown.code, 0, chown.stderr);
  await Deno.chmod(`${dir}/bundle/rootfs/tmp`, 0o1777);
  for (const p of [dir, `${dir}/bundle`, `${dir}/state`]) await Deno.chown(p, user.uid, user.gid);
  return dir;
}

function testUserInfo(user: TestUser): UserInfo {
  return {
    name: user.name,
    uid: user.uid,
    gid: user.gid,
    groupName: user.name,
    gecos: "",
    home: user.home,
    shell: "/bin/sh",
    groups: [{ gid: user.gid, name: user.name }],
    subuid: [user.subuid],
    subgid: [user.subuid],
    env: { PATH: "/usr/bin:/bin", HOME: user.home, FROMHOST: "host-value", UNWANTED: "u" },
    umask: 0o027,
  };
}

/**
 * Writes the bundle and runs it with runc as `user`: directly when runc
 * creates the user namespace, else as root of an outer namespace that has the
 * container's mapping (made by newuidmap on a holder process, entered with
 * nsenter), as the FUSE path does.
 */
async function runBundle(
  user: TestUser,
  dir: string,
  built: Awaited<ReturnType<typeof buildBundleSpec>>,
  root: boolean,
) {
  const rootfs = `${dir}/bundle/rootfs`;
  await Deno.writeTextFile(`${dir}/bundle/config.json`, JSON.stringify(built.spec, null, 2));
  await Deno.writeTextFile(`${rootfs}/etc/passwd`, built.passwd);
  await Deno.writeTextFile(`${rootfs}/etc/group`, built.group);
  for (const f of ["passwd", "group"] as const) {
    await Deno.writeTextFile(`${dir}/bundle/${f}`, built[f]);
  }
  const id = `shoal-spec-test-${crypto.randomUUID().slice(0, 8)}`;
  const run = ["/usr/sbin/runc", "--root", `${dir}/state`, "run", "--bundle", `${dir}/bundle`, id];
  if (root) return await runAs(user, run[0]!, run.slice(1));
  const map = (own: number) =>
    idMap(own, [user.subuid], false).mappings.map((m) => `${m.containerID} ${m.hostID} ${m.size}`)
      .join(" ");
  // The holder's output goes nowhere: a failed step must not leave it holding the test's pipe.
  const outer = `
    d=$1 umap=$2 gmap=$3
    shift 3
    mkfifo "$d/up" "$d/down"
    unshare --user --mount sh -c 'echo >"$1/up"; read x <"$1/down"' holder "$d" </dev/null >/dev/null 2>&1 &
    h=$!
    read x <"$d/up"
    newuidmap $h $umap && newgidmap $h $gmap || { kill $h; exit 1; }
    nsenter --target $h --user --mount sh -c 'echo >"$1/down"; shift; exec "$@"' in "$d" "$@"
  `;
  return await runAs(user, "sh", [
    "-c",
    outer,
    "outer",
    dir,
    map(user.uid),
    map(user.gid),
    ...run,
  ]);
}

const SCRIPT = (hostPid: number, shmFile: string) =>
  [
    "id",
    'echo "HOME=$HOME FROMHOST=$FROMHOST IMG=$IMG X=$X UNWANTED=${UNWANTED-unset}"',
    "umask",
    "pwd",
    "grep CapEff /proc/self/status",
    "stat -c owner=%u /bin/busybox",
    `cat /dev/shm/${shmFile}`,
    'echo "tmp=[$(ls -A /tmp)]"',
    "touch /data/created && echo data-rw",
    "touch /ro/x 2>/dev/null || echo ro-refused",
    "echo hi > /dev/mynull && echo dev-ok",
    `test -e /proc/${hostPid} && echo host-pids-visible || echo host-pids-hidden`,
    "head -c 9 /proc/1/cmdline; echo",
  ].join("; ");

async function realRun(root: boolean) {
  const user = await testUser();
  const container0 = root ? user.uid : user.subuid.start;
  const dir = await makeBundle(user, container0);
  const shmFile = `shoal-spec-test-${crypto.randomUUID().slice(0, 8)}`;
  let mounted = false;
  try {
    await Deno.writeTextFile(`/dev/shm/${shmFile}`, "shm-shared\n", { mode: 0o644 });
    // A noexec,noatime scratch filesystem: its locked flags must be carried over.
    const m = await runCommand("mount", [
      "-t",
      "tmpfs",
      "-o",
      "noexec,noatime,size=1m",
      "tmpfs",
      `${dir}/data`,
    ]);
    assertEquals(m.code, 0, m.stderr);
    mounted = true;
    await Deno.chown(`${dir}/data`, user.uid, user.gid);
    const built = await buildBundleSpec(
      request({
        root,
        pid: root ? "host" : "private",
        init: !root,
        command: ["sh", "-c", SCRIPT(Deno.pid, shmFile)],
        mounts: [parseVolumeOption(`${dir}/data:/data`), parseVolumeOption(`${dir}/state:/ro:ro`)],
        env: [parseEnvOption("X=from-e")],
        workdir: "/work/dir",
        devices: [parseDeviceOption("/dev/null:/dev/mynull")],
      }),
      IMAGE,
      config({ environment: { unset: ["UNWANTED"] } }),
      testUserInfo(user),
      {
        hostname: "node7",
        mqueue: false,
        userns: { kind: root ? "create" : "inherit" },
        bundle: `${dir}/bundle`,
        init: "/usr/bin/catatonit",
      },
    );
    const r = await runBundle(user, dir, built, root);
    assertEquals(r.code, 0, r.stderr);
    const created = await Deno.stat(`${dir}/data/created`);
    assertEquals(created.uid, user.uid, "files made in a bind mount belong to the user");
    return { user, out: r.stdout.split("\n") };
  } finally {
    if (mounted) await runCommand("umount", [`${dir}/data`]);
    await Deno.remove(`/dev/shm/${shmFile}`).catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("real runc: --root runs as root with the 13 capabilities, host pids, shared /dev/shm", async () => {
  const { out } = await realRun(true);
  assertEquals(out.slice(0, 12), [
    "uid=0(root) gid=0(root) groups=0(root)",
    "HOME=/root FROMHOST=host-value IMG=image X=from-e UNWANTED=unset",
    "0027",
    "/work/dir",
    "CapEff:\t00000000a80405fb",
    "owner=0",
    "shm-shared",
    "tmp=[]",
    "data-rw",
    "ro-refused",
    "dev-ok",
    "host-pids-visible",
  ]);
});

Deno.test("real runc: keep-id runs as the user, image root stays root, --init is PID 1", async () => {
  const { user, out } = await realRun(false);
  assertEquals(out.slice(0, 13), [
    // runc, root of a namespace that allows setgroups, resets the supplementary groups (path B
    // denies it: launch_fuse.ts).
    `uid=${user.uid}(${user.name}) gid=${user.gid}(${user.name})`,
    `HOME=${user.home} FROMHOST=host-value IMG=image X=from-e UNWANTED=unset`,
    "0027",
    "/work/dir",
    "CapEff:\t0000000000000000",
    "owner=0",
    "shm-shared",
    "tmp=[]",
    "data-rw",
    "ro-refused",
    "dev-ok",
    "host-pids-hidden",
    INIT_PATH,
  ]);
});

Deno.test("locked flags are each mount's own: two mounts of one filesystem with other flags are told apart", async () => {
  const dir = await Deno.makeTempDir({ prefix: "shoal-flags-" });
  const mounted: string[] = [];
  const mount = async (...args: string[]) => {
    const r = await runCommand("mount", args);
    assertEquals(r.code, 0, r.stderr);
  };
  try {
    await Deno.mkdir(`${dir}/fs`);
    await Deno.mkdir(`${dir}/view`);
    await mount("-t", "tmpfs", "shoal-flags", `${dir}/fs`);
    mounted.push(`${dir}/fs`);
    await Deno.mkdir(`${dir}/fs/sub`);
    await Deno.writeTextFile(`${dir}/fs/sub/lib.so`, "");
    // The same directory of the same tmpfs, seen again read-only and noexec.
    await mount("--bind", `${dir}/fs/sub`, `${dir}/view`);
    mounted.push(`${dir}/view`);
    await mount("-o", "remount,bind,ro,noexec", `${dir}/view`);
    const flags = (path: string) => {
      const { mntId } = statPath(path);
      assert(mntId !== undefined, "statx reports no mount id");
      return withLockedFlags(["rbind"], path, mntId);
    };
    const writable = flags(`${dir}/fs/sub/lib.so`);
    const readOnly = flags(`${dir}/view/lib.so`);
    assert(!writable.includes("ro") && !writable.includes("noexec"), writable.join(","));
    assert(readOnly.includes("ro") && readOnly.includes("noexec"), readOnly.join(","));
    // Asked again, each mount's flags are the same (kept by mount, not recomputed wrongly).
    assertEquals(flags(`${dir}/view/lib.so`), readOnly);
    assertEquals(flags(`${dir}/fs/sub/lib.so`), writable);
  } finally {
    for (const m of mounted.reverse()) await runCommand("umount", [m]);
    await Deno.remove(dir, { recursive: true });
  }
});
