/**
 * The pure-data parts of a run: id mappings, mount/-v/-e/--device parsing and
 * their one-line errors, path resolution inside a rootfs, environment merge,
 * passwd/group merge.
 */
import { assert, assertEquals, assertRejects, assertThrows } from "./support/assert.ts";
import { UsageError } from "../mod/errors.ts";
import { containerIdOf, idMap, MAX_RANGES, MAX_SUBORDINATE_IDS } from "../mod/runtime/idmap.ts";
import {
  type MountRequest,
  parseMountOption,
  parseVolumeOption,
  resolveInRoot,
  resolveMounts,
} from "../mod/runtime/mounts.ts";
import { DEFAULT_PATH, mergeEnvironment, parseEnvOption } from "../mod/runtime/env.ts";
import { containerGroup, containerPasswd, containerShell } from "../mod/runtime/passwd.ts";
import { parseDeviceOption, resolveDevice } from "../mod/runtime/devices.ts";
import { callerInfo, hostInfo } from "../mod/runtime/caller.ts";
import { installLayout } from "../mod/config/layout.ts";
import { runCommand } from "./support/shoal.ts";

const R = [{ start: 100000, count: 65536 }];

Deno.test("keep-id for uid 1001 with 100000:65536: own uid kept, root stays root", () => {
  const m = idMap(1001, R, false);
  assertEquals(m.mappings, [
    { containerID: 0, hostID: 100000, size: 1001 },
    { containerID: 1001, hostID: 1001, size: 1 },
    { containerID: 1002, hostID: 101001, size: 64535 },
  ]);
  assert(m.subordinate);
  assertEquals(containerIdOf(m.mappings, 100000), 0);
  assertEquals(containerIdOf(m.mappings, 1001), 1001);
  assertEquals(containerIdOf(m.mappings, 165535), 65536);
  assertEquals(containerIdOf(m.mappings, 4242), undefined);
});

Deno.test("--root maps 0 to the caller and the ranges, concatenated, from 1", () => {
  const ranges = [{ start: 100000, count: 1000 }, { start: 200000, count: 2000 }];
  assertEquals(idMap(1001, ranges, true).mappings, [
    { containerID: 0, hostID: 1001, size: 1 },
    { containerID: 1, hostID: 100000, size: 1000 },
    { containerID: 1001, hostID: 200000, size: 2000 },
  ]);
  // keep-id splits the second range around the caller's id 1500.
  assertEquals(idMap(1500, ranges, false).mappings, [
    { containerID: 0, hostID: 100000, size: 1000 },
    { containerID: 1000, hostID: 200000, size: 500 },
    { containerID: 1500, hostID: 1500, size: 1 },
    { containerID: 1501, hostID: 200500, size: 1500 },
  ]);
});

Deno.test("mappings: caps, overlaps, big uids, no range", () => {
  assertEquals(idMap(1001, [{ start: 100000, count: 10_000_000 }], true).mappings[1], {
    containerID: 1,
    hostID: 100000,
    size: MAX_SUBORDINATE_IDS,
  });
  const two = [{ start: 100000, count: 60000 }, { start: 300000, count: 60000 }];
  assertEquals(idMap(5, two, true).mappings.at(-1), {
    containerID: 60001,
    hostID: 300000,
    size: MAX_SUBORDINATE_IDS - 60000,
  });
  // A range listed twice (by name and by uid) or covering the caller's own id is skipped.
  const overlapping = [
    { start: 100000, count: 100 },
    { start: 100050, count: 100 },
    { start: 1000, count: 10 },
    { start: 500000, count: 10 },
  ];
  assertEquals(idMap(1001, overlapping, true).mappings, [
    { containerID: 0, hostID: 1001, size: 1 },
    { containerID: 1, hostID: 100000, size: 100 },
    { containerID: 101, hostID: 500000, size: 10 },
  ]);
  const many = Array.from({ length: 70 }, (_, i) => ({ start: 100000 + i * 10, count: 10 }));
  assertEquals(idMap(1001, many, true).mappings.length, MAX_RANGES + 1);
  // A uid above the range size: all subordinate ids below it, nothing above.
  assertEquals(idMap(200000, R, false).mappings, [
    { containerID: 0, hostID: 100000, size: 65536 },
    { containerID: 200000, hostID: 200000, size: 1 },
  ]);
  // A range holding the caller's own id cannot be mapped beside it.
  assertEquals(idMap(123456, R, false).subordinate, false);
  assertEquals(idMap(1001, [], true), {
    mappings: [{ containerID: 0, hostID: 1001, size: 1 }],
    subordinate: false,
  });
  assertEquals(idMap(1001, [], false), {
    mappings: [{ containerID: 1001, hostID: 1001, size: 1 }],
    subordinate: false,
  });
});

Deno.test("--mount accepts Sarus and Docker key spellings", () => {
  const base = { source: "/a", destination: "/b", readonly: false };
  const cases: [string, Partial<MountRequest>][] = [
    ["type=bind,source=/a,destination=/b", base],
    ["type=bind,src=/a,dst=/b", base],
    ["type=bind,src=/a,target=/b,readonly", { ...base, readonly: true }],
    ["type=bind,src=/a,dst=/b,ro", { ...base, readonly: true }],
    ["type=bind,src=/a,dst=/b,readonly=true", { ...base, readonly: true }],
    ["type=bind,src=/a,dst=/b,readonly=false", base],
    ["Type=bind,Source=/a,Destination=/b", base],
  ];
  for (const [spec, want] of cases) {
    const got = parseMountOption(spec);
    assertEquals(
      { source: got.source, destination: got.destination, readonly: got.readonly },
      want,
      spec,
    );
  }
});

Deno.test("--mount errors are one line naming the problem", () => {
  const cases: [string, string][] = [
    ["source=/a,destination=/b", "--mount=source=/a,destination=/b: 'type' is required"],
    ["type=volume,src=/a,dst=/b", "unsupported type 'volume' (only type=bind is supported)"],
    ["type=bind,src=/a,dst=/b,propagation=shared", "unknown key 'propagation' (keys: type,"],
    ["type=bind,dst=/b", "'source' is required"],
    ["type=bind,src=/a", "'destination' is required"],
    ["type=bind,src=/a,dst=/b,readonly=maybe", "readonly takes true or false, not 'maybe'"],
    ["type=bind,src=/a,source=/c,dst=/b", "'source' given twice"],
  ];
  for (const [spec, msg] of cases) {
    const err = assertThrows(() => parseMountOption(spec), UsageError, msg);
    assert(!err.message.includes("\n"));
  }
});

Deno.test("-v SRC:DST[:ro|rw]", () => {
  assertEquals(parseVolumeOption("/a:/b").readonly, false);
  assertEquals(parseVolumeOption("/a:/b:ro").readonly, true);
  assertEquals(parseVolumeOption("/a:/b:rw").destination, "/b");
  assertThrows(() => parseVolumeOption("data:/b"), UsageError, "named volumes are not supported");
  assertThrows(() => parseVolumeOption("/a"), UsageError, "expected SOURCE:DESTINATION[:ro|rw]");
  assertThrows(() => parseVolumeOption("/a:/b:z"), UsageError, "unknown option 'z' (ro or rw)");
});

Deno.test("resolveMounts: realpath of sources, destination rules", async () => {
  const dir = await Deno.makeTempDir({ prefix: "shoal-mounts-" });
  try {
    await Deno.mkdir(`${dir}/real`);
    await Deno.symlink(`${dir}/real`, `${dir}/link`);
    const m = (src: string, dst: string, ro = false) =>
      parseVolumeOption(`${src}:${dst}${ro ? ":ro" : ""}`);
    assertEquals(await resolveMounts([m(`${dir}/link`, "/data/", true), m(dir, "/tmp")], []), [
      { source: `${dir}/real`, destination: "/data", readonly: true },
      { source: dir, destination: "/tmp", readonly: false },
    ]);
    const bad: [MountRequest, string][] = [
      [{ ...m(dir, "/x"), source: "rel" }, "source 'rel' must be an absolute path"],
      [m(dir, "data"), "destination 'data' must be an absolute path"],
      [m(dir, "/a/../etc"), "destination '/a/../etc' must not contain '..'"],
      [m(`${dir}/missing`, "/x"), `source ${dir}/missing does not exist`],
      [m(dir, "/proc/sys"), "mounting on /proc/sys is not allowed (/proc is protected)"],
      [m(dir, "/dev/shm/x"), "(/dev/shm is protected)"],
      [m(dir, "/sys"), "(/sys is protected)"],
      [m(dir, "/dev"), "mounting on /dev itself is not allowed"],
      [m(dir, "/"), "mounting on / itself is not allowed"],
      [m(dir, "/opt/site/sub"), "(/opt/site is protected)"],
    ];
    for (const [req, msg] of bad) {
      await assertRejects(() => resolveMounts([req], ["/opt/site/"]), UsageError, msg);
    }
    await assertRejects(
      () => resolveMounts([m(dir, "/data"), m(`${dir}/real`, "/data/")], []),
      UsageError,
      `-v ${dir}/real:/data/: /data is already the destination of -v ${dir}:/data`,
    );
    await assertRejects(
      () => resolveMounts([m(dir, "/scratch")], [], new Map([["/scratch", "site mount /s"]])),
      UsageError,
      "/scratch is already the destination of site mount /s",
    );
    // Mounts below /dev (other than the container's own) and on /opt/sitex are fine.
    assertEquals(
      (await resolveMounts([m(dir, "/dev/infiniband"), m(dir, "/opt/sitex")], ["/opt/site"]))
        .length,
      2,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("resolveInRoot never leaves the rootfs, whatever the symlinks say", async () => {
  const root = await Deno.makeTempDir({ prefix: "shoal-root-" });
  try {
    await Deno.mkdir(`${root}/usr/lib`, { recursive: true });
    await Deno.mkdir(`${root}/etc`);
    await Deno.writeTextFile(`${root}/etc/file`, "");
    await Deno.symlink("/usr/lib", `${root}/etc/abs`);
    await Deno.symlink("../../../../..", `${root}/usr/up`);
    await Deno.symlink("/etc/passwd", `${root}/usr/hostpasswd`);
    await Deno.symlink("loop2", `${root}/loop1`);
    await Deno.symlink("loop1", `${root}/loop2`);
    await Deno.symlink("../lib", `${root}/usr/lib/rel`);
    for (let i = 0; i < 300; i++) await Deno.symlink(`c${i + 1}`, `${root}/c${i}`);
    await Deno.mkdir(`${root}/c300`);
    assertEquals(resolveInRoot(root, "/etc/abs/x"), `${root}/usr/lib/x`);
    assertEquals(resolveInRoot(root, "/usr/up"), root);
    assertEquals(resolveInRoot(root, "/usr/up/etc/shadow"), `${root}/etc/shadow`);
    assertEquals(resolveInRoot(root, "/usr/hostpasswd"), `${root}/etc/passwd`);
    assertEquals(resolveInRoot(root, "/../../.."), root);
    assertEquals(resolveInRoot(root, "/usr/lib/rel/rel/rel/a"), `${root}/usr/lib/a`);
    assertEquals(resolveInRoot(root, "/new/dir"), `${root}/new/dir`);
    assertEquals(resolveInRoot(root, "/etc/file/below"), `${root}/etc/file/below`);
    assertEquals(resolveInRoot(root, "/c100"), `${root}/c300`);
    assertThrows(
      () => resolveInRoot(root, "/loop1/x"),
      UsageError,
      "too many levels of symbolic links",
    );
    assertThrows(() => resolveInRoot(root, "/c0"), UsageError, "too many levels of symbolic links");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("-e NAME=VALUE and -e NAME; bad names are refused", () => {
  assertEquals(parseEnvOption("A=b=c"), { name: "A", value: "b=c" });
  assertEquals(parseEnvOption("A="), { name: "A", value: "" });
  assertEquals(parseEnvOption("_X1"), { name: "_X1" });
  for (const bad of ["=x", "1A=2", "A-B=1", "A B", ""]) {
    assertThrows(() => parseEnvOption(bad), UsageError, "invalid variable name");
  }
});

Deno.test("environment merges host, identity, image, site, -e in that order", () => {
  const env = mergeEnvironment({
    host: { PATH: "/host/bin", HOME: "/home/h", HOSTONLY: "1", A: "host", KEEP: "k", GONE: "x" },
    identity: { HOME: "/root", USER: "root" },
    image: ["PATH=/img/bin:/bin", "A=image", "LD=/img/lib", "B=image", "malformed"],
    site: {
      set: { B: "site", GONE: "still" },
      prepend: { PATH: "/site/pre", LD: "/site/lib:", NEW: "/n" },
      append: { PATH: "/site/post", EMPTY: ":/e:" },
      unset: ["GONE"],
    },
    options: [
      { name: "A", value: "cli" },
      { name: "KEEP" },
      { name: "LD" },
      { name: "GONE", value: "back" },
    ],
  });
  const map = Object.fromEntries(
    env.map((e) => [e.slice(0, e.indexOf("=")), e.slice(e.indexOf("=") + 1)]),
  );
  assertEquals(map, {
    PATH: "/site/pre:/img/bin:/bin:/site/post",
    HOME: "/root",
    HOSTONLY: "1",
    A: "cli",
    KEEP: "k",
    GONE: "back",
    USER: "root",
    LD: "/site/lib:/img/lib",
    B: "site",
    NEW: "/n",
    EMPTY: "/e",
  });
});

Deno.test("an image without PATH gets the standard one, not the host's", () => {
  const site = { set: {}, prepend: {}, append: {}, unset: [] };
  const env = mergeEnvironment({
    host: { PATH: "/host/bin" },
    identity: {},
    image: [],
    site,
    options: [],
  });
  assertEquals(env, [`PATH=${DEFAULT_PATH}`]);
});

const IMAGE_PASSWD = [
  "root:x:0:0:root:/root:/bin/bash",
  "_apt:x:42:65534::/nonexistent:/usr/sbin/nologin",
  "ubuntu:x:1001:1001:Ubuntu:/home/ubuntu:/bin/bash",
  "alice:x:2000:2000:old alice:/home/old:/bin/bash",
  "",
].join("\n");
const alice = {
  name: "alice",
  uid: 1001,
  gid: 1001,
  gecos: "Alice",
  home: "/home/alice",
  shell: "/bin/bash",
};

Deno.test("passwd: the caller first, image users kept, the caller's name means the caller", () => {
  assertEquals(
    containerPasswd(IMAGE_PASSWD, alice, false),
    [
      "alice:x:1001:1001:Alice:/home/alice:/bin/bash",
      "root:x:0:0:root:/root:/bin/bash",
      "_apt:x:42:65534::/nonexistent:/usr/sbin/nologin",
      "ubuntu:x:1001:1001:Ubuntu:/home/ubuntu:/bin/bash",
      "",
    ].join("\n"),
  );
  // --root: the image's root stays, the caller is not added as a second uid 0.
  assertEquals(containerPasswd(IMAGE_PASSWD, alice, true), IMAGE_PASSWD);
  assertEquals(
    containerPasswd("", alice, true),
    "root:x:0:0:root:/root:/bin/sh\n",
  );
  assertEquals(containerShell(IMAGE_PASSWD, "/bin/bash"), "/bin/bash");
  assertEquals(containerShell(IMAGE_PASSWD, "/usr/bin/zsh"), "/bin/sh");
  assertEquals(containerShell("", ""), "/bin/sh");
});

Deno.test("group: primary group, visible supplementary groups, names never clash", () => {
  const image = [
    "root:x:0:",
    "users:!:100:bob",
    "alice:x:3000:",
    "video:x:44:",
    "# comment",
    "",
  ].join("\n");
  const got = containerGroup(
    image,
    { name: "alice", gid: 1001, members: [] },
    "alice",
    [
      { gid: 100, name: "hostusers" },
      { gid: 5000, name: "proj" },
      { gid: 5001, name: "video" },
      { gid: 5002 },
    ],
    false,
  );
  assertEquals(
    got,
    [
      "alice:x:1001:",
      "root:x:0:",
      "users:!:100:bob,alice",
      "video:x:44:",
      "# comment",
      "proj:x:5000:alice",
      "group5001:x:5001:alice",
      "group5002:x:5002:alice",
      "",
    ].join("\n"),
  );
  assertEquals(
    containerGroup("", { name: "alice", gid: 1001, members: [] }, "root", [], true),
    "root:x:0:\n",
  );
  assertEquals(
    containerGroup(image, { name: "alice", gid: 1001, members: [] }, "root", [], true),
    image,
  );
});

Deno.test("--device HOST[:CTR][:rwm]", () => {
  const p = (s: string) => {
    const d = parseDeviceOption(s);
    return [d.hostPath, d.containerPath, d.access];
  };
  assertEquals(p("/dev/null"), ["/dev/null", "/dev/null", "rwm"]);
  assertEquals(p("/dev/null:rw"), ["/dev/null", "/dev/null", "rw"]);
  assertEquals(p("/dev/null:/dev/mynull"), ["/dev/null", "/dev/mynull", "rwm"]);
  assertEquals(p("/dev/null:/dev/mynull:r"), ["/dev/null", "/dev/mynull", "r"]);
  const bad: [string, string][] = [
    ["dev/null", "the host device must be an absolute path"],
    ["/dev/null:/dev/x:rwx", "access 'rwx' must be a combination of r, w and m"],
    ["/dev/null:/dev/x:rr", "access 'rr' must be a combination"],
    ["/dev/null:x", "destination 'x' must be an absolute path"],
    ["/dev/null:/dev/../x", "must not contain '..'"],
    ["/a:/b:r:w", "expected HOST[:CONTAINER][:rwm]"],
  ];
  for (const [spec, msg] of bad) {
    const err = assertThrows(() => parseDeviceOption(spec), UsageError, msg);
    assert(err.message.startsWith(`--device ${spec}: `));
  }
});

Deno.test("devices must exist and be devices; a symlink names its node", async () => {
  const dir = await Deno.makeTempDir({ prefix: "shoal-dev-" });
  try {
    await Deno.symlink("/dev/null", `${dir}/nul`);
    assertEquals(resolveDevice(parseDeviceOption(`${dir}/nul:/dev/x`)), {
      source: "/dev/null",
      destination: "/dev/x",
    });
    assertThrows(
      () => resolveDevice(parseDeviceOption("/etc/hosts")),
      UsageError,
      "/etc/hosts is not a device (use --mount for files)",
    );
    assertThrows(
      () => resolveDevice(parseDeviceOption(`${dir}/none`)),
      UsageError,
      `${dir}/none does not exist`,
    );
    assertEquals(resolveDevice(parseDeviceOption(`${dir}/none`), true), null);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("callerInfo and hostInfo read who runs shoal and where", async () => {
  const me = await callerInfo();
  const pw = (await runCommand("getent", ["passwd", String(Deno.uid())])).stdout.trim().split(":");
  assertEquals([me.name, me.uid, me.home], [pw[0], Deno.uid(), pw[5]]);
  assertEquals(me.env.PATH, Deno.env.get("PATH"));
  const umask = (await runCommand("sh", ["-c", "umask"])).stdout.trim();
  assertEquals(me.umask, parseInt(umask, 8));
  const ids = (await runCommand("id", ["-G"])).stdout.trim().split(" ").map(Number);
  assert(me.groups.every((g) => ids.includes(g.gid)));
  const host = hostInfo({ kind: "inherit" }, "/run/b");
  assertEquals([host.hostname, host.userns.kind, host.bundle], [
    Deno.hostname(),
    "inherit",
    "/run/b",
  ]);
});

Deno.test("the guard script of the unprivileged path passes shellcheck", async () => {
  const r = await runCommand("shellcheck", ["--shell=sh", installLayout().guardScript]);
  assertEquals([r.code, r.stdout], [0, ""]);
});
