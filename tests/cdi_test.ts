/**
 * CDI devices (mod/cdi/): `shoal run --device vendor.com/class=name` with
 * hand-written spec files of every version and field kind, invalid ones,
 * spec dirs that conflict or are not trusted, fake device nodes made here,
 * and real runs on both run paths as an unprivileged user.
 */
import {
  assert,
  assertEquals,
  assertMatch,
  assertRejects,
  assertThrows,
} from "./support/assert.ts";
import { runSite } from "./support/run.ts";
import { rootOwnedTempDir } from "./support/install.ts";
import { fakeNode, writeSpec } from "./support/cdi.ts";
import { checkSpec } from "../mod/cdi/spec.ts";
import { readDevices, selectDevices } from "../mod/cdi/registry.ts";
import { applyCdiDevices } from "../mod/cdi/apply.ts";
import { parseDeviceArgument } from "../mod/runtime/devices.ts";
import { ShapeError } from "../mod/shape.ts";
import { ConfigError, SecurityError, UsageError } from "../mod/errors.ts";
import type { OciSpec } from "../mod/runtime/oci.ts";

function spec(version: string, devices: unknown[], extra: Record<string, unknown> = {}) {
  return { cdiVersion: version, kind: "example.com/gpu", devices, ...extra };
}

const dev = (name: string, containerEdits: unknown = { env: [`DEV=${name}`] }) => ({
  name,
  containerEdits,
});

Deno.test("CDI specs: every version reads the fields it has", () => {
  const base = {
    env: ["A=1"],
    deviceNodes: [{
      path: "/dev/gpu0",
      type: "c",
      major: 1,
      minor: 3,
      fileMode: 0o666,
      permissions: "rw",
      uid: 0,
      gid: 0,
    }],
    mounts: [{ hostPath: "/usr/lib", containerPath: "/usr/lib/x", options: ["ro", "bind"] }],
    hooks: [{
      hookName: "createContainer",
      path: "/bin/true",
      args: ["true"],
      env: ["X=1"],
      timeout: 5,
    }],
  };
  for (const v of ["0.3.0", "0.4.0", "0.5.0", "0.6.0", "0.7.0", "0.8.0", "1.0.0", "1.1.0"]) {
    const s = checkSpec(spec(v, [dev("gpu0", base)], { containerEdits: { env: ["B=2"] } }));
    assertEquals(s.devices[0]!.containerEdits as unknown, base);
  }
  const newer = {
    env: ["A=1"],
    deviceNodes: [{ path: "/dev/gpu0", hostPath: "/dev/nvidia0" }],
    mounts: [{ hostPath: "/a", containerPath: "/b", type: "bind" }],
    intelRdt: { closID: "x", enableCMT: true },
    additionalGids: [44],
  };
  const s = checkSpec(spec("0.8.0", [{ ...dev("0", newer), annotations: { a: "b" } }], {
    kind: "example.com/gpu.v2",
    annotations: { k: "v" },
  }));
  assertEquals(s.devices[0]!.containerEdits.additionalGids, [44]);
  const latest = checkSpec(spec("1.1.0", [dev("g", {
    netDevices: [{ hostInterfaceName: "ib0", name: "ib0" }],
    intelRdt: { schemata: ["L3:0=f"], enableMonitoring: true },
  })]));
  assertEquals(latest.devices[0]!.containerEdits.netDevices, [{
    hostInterfaceName: "ib0",
    name: "ib0",
  }]);
});

Deno.test("CDI specs: a field newer than the file's cdiVersion, an unknown field, bad names", () => {
  const bad: [unknown, RegExp][] = [
    [
      spec("0.3.0", [
        dev("g", { mounts: [{ hostPath: "/a", containerPath: "/b", type: "bind" }] }),
      ]),
      /^devices\.0\.containerEdits\.mounts\.0\.type: expected cdiVersion 0\.4\.0 or later for a mount type \(the file says 0\.3\.0\)/,
    ],
    [
      spec("0.4.0", [dev("g", { deviceNodes: [{ path: "/dev/x", hostPath: "/dev/y" }] })]),
      /deviceNodes\.0\.hostPath: expected cdiVersion 0\.5\.0/,
    ],
    [spec("0.4.0", [dev("0g")]), /^devices\.0\.name: expected cdiVersion 0\.5\.0/],
    [
      spec("0.5.0", [dev("g")], { annotations: { a: "b" } }),
      /^annotations: expected cdiVersion 0\.6\.0/,
    ],
    [
      spec("0.5.0", [dev("g")], { kind: "example.com/gpu.v2" }),
      /^kind: expected cdiVersion 0\.6\.0/,
    ],
    [
      spec("0.6.0", [dev("g", { additionalGids: [5] })]),
      /additionalGids: expected cdiVersion 0\.7\.0/,
    ],
    [
      spec("0.6.0", [dev("g")], { containerEdits: { intelRdt: {} } }),
      /intelRdt: expected cdiVersion 0\.7\.0/,
    ],
    [spec("0.2.0", [dev("g")]), /^cdiVersion: expected "0\.3\.0" or/],
    [
      spec("0.8.0", [dev("g", { env: ["A=1"], hostpath: "/x" })]),
      /containerEdits: expected only the keys .* not "hostpath"/,
    ],
    [
      spec("0.8.0", [dev("g", { deviceNodes: [{ path: "/dev/x", mode: 1 }] })]),
      /deviceNodes\.0: expected only the keys .*not "mode"/,
    ],
    [{ ...spec("0.8.0", [dev("g")]), extra: 1 }, /^expected only the keys .* not "extra"/],
    [spec("0.8.0", [dev("g")], { kind: "gpu" }), /^kind: expected a kind vendor\/class/],
    [spec("0.8.0", [dev("-g")]), /^devices\.0\.name: expected a device name/],
    [spec("0.8.0", [dev("g"), dev("g")]), /^devices\.1\.name: expected a name not used before/],
    [spec("0.8.0", [dev("g", { env: ["NOEQUALS"] })]), /env\.0: expected a NAME=VALUE string/],
    [
      spec("0.8.0", [dev("g", { hooks: [{ hookName: "later", path: "/bin/true" }] })]),
      /hookName: expected "prestart" or/,
    ],
    [
      spec("0.8.0", [dev("g", { mounts: [{ hostPath: "rel", containerPath: "/b" }] })]),
      /hostPath: expected an absolute path/,
    ],
    [spec("0.8.0", []), /^devices: expected a device/],
    [
      spec("1.0.0", [dev("g", { netDevices: [{ hostInterfaceName: "ib0", name: "ib0" }] })]),
      /netDevices: expected cdiVersion 1\.1\.0 or later/,
    ],
    [
      spec("1.0.0", [dev("g", { intelRdt: { enableMonitoring: true } })]),
      /intelRdt\.enableMonitoring: expected cdiVersion 1\.1\.0 or later/,
    ],
    [
      spec("1.1.0", [dev("g", { intelRdt: { enableCMT: true } })]),
      /^devices\.0\.containerEdits\.intelRdt\.enableCMT: expected no enableCMT or enableMBM from cdiVersion 1\.1\.0 on/,
    ],
  ];
  for (const [value, message] of bad) {
    const err = assertThrows(() => checkSpec(value), ShapeError);
    assertMatch(err.message, message);
  }
});

Deno.test("--device tells a CDI name from a host path and checks it", () => {
  assertEquals(parseDeviceArgument("example.com/gpu=0"), {
    cdi: "example.com/gpu=0",
    option: "--device example.com/gpu=0",
  });
  assertEquals(parseDeviceArgument("example.com/gpu=all"), {
    cdi: "example.com/gpu=all",
    option: "--device example.com/gpu=all",
  });
  assert(!("cdi" in parseDeviceArgument("/dev/null:/dev/x")));
  assertThrows(
    () => parseDeviceArgument("example.com/gpu=-x"),
    UsageError,
    "--device example.com/gpu=-x: device name",
  );
  assertThrows(() => parseDeviceArgument("exa mple/gpu=0"), UsageError, 'vendor "exa mple"');
});

Deno.test("CDI spec dirs: later dirs win, YAML read, conflicts and unknown devices named", async () => {
  const root = await rootOwnedTempDir();
  try {
    const [a, b] = [`${root}/a`, `${root}/b`];
    await Deno.mkdir(a, { mode: 0o755 });
    await Deno.mkdir(b, { mode: 0o755 });
    await writeSpec(
      a,
      "gpu.json",
      spec("0.3.0", [dev("0"), dev("1")].map((d) => ({ ...d, name: `g${d.name}` }))),
    );
    await writeSpec(
      b,
      "gpu.yaml",
      'cdiVersion: "0.5.0"\nkind: example.com/gpu\ndevices:\n  - name: g1\n    containerEdits:\n      env: ["DEV=later"]\n',
    );
    await writeSpec(b, "notes.txt", "not a spec");
    const known = await readDevices([a, b], true);
    assertEquals([...known.keys()].sort(), ["example.com/gpu=g0", "example.com/gpu=g1"]);
    assertEquals(known.get("example.com/gpu=g1")!.device.containerEdits.env, ["DEV=later"]);
    assertEquals(known.get("example.com/gpu=g1")!.file.path, `${b}/gpu.yaml`);
    assertEquals(
      selectDevices(known, ["example.com/gpu=all", "example.com/gpu=g0"], [a, b]).map((d) =>
        d.qualified
      ),
      ["example.com/gpu=g0", "example.com/gpu=g1"],
    );
    const unknown = assertThrows(
      () => selectDevices(known, ["example.com/gpu=g7"], [a, b]),
      UsageError,
    );
    assertMatch(unknown.message, /^--device example\.com\/gpu=g7: no such CDI device in /);
    assertEquals(unknown.hint, "the devices there: example.com/gpu=g0, example.com/gpu=g1");

    // Two files of one dir defining a device: neither is chosen.
    await writeSpec(b, "again.json", spec("0.3.0", [dev("g1")]));
    const both = await assertRejects(() => readDevices([a, b], true), ConfigError);
    assertMatch(
      both.message,
      /example\.com\/gpu=g1 is defined both in .*\/b\/again\.json and in .*\/b\/gpu\.yaml/,
    );
    await Deno.remove(`${b}/again.json`);

    // A file the file names and field of.
    await writeSpec(b, "bad.json", spec("0.3.0", [dev("g2", { additionalGids: [1] })]));
    const bad = await assertRejects(() => readDevices([a, b], true), ConfigError);
    assertMatch(
      bad.message,
      /^CDI spec .*\/b\/bad\.json: devices\.0\.containerEdits\.additionalGids: expected cdiVersion 0\.7\.0/,
    );
    await Deno.remove(`${b}/bad.json`);

    // Writable by others, or owned by a user: refused, unless checks are off.
    await Deno.chmod(`${b}/gpu.yaml`, 0o666);
    const open = await assertRejects(() => readDevices([a, b], true), SecurityError);
    assertMatch(open.message, /^CDI spec .*\/b\/gpu\.yaml: .*writable/);
    assertEquals((await readDevices([a, b], false)).size, 2);
    await Deno.chmod(`${b}/gpu.yaml`, 0o644);
    await Deno.chown(`${a}/gpu.json`, 65534, 65534);
    const owner = await assertRejects(() => readDevices([a, b], true), SecurityError);
    assertMatch(owner.message, /^CDI spec .*\/a\/gpu\.json: .*owned by root/);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

function emptySpec(): OciSpec {
  return {
    ociVersion: "1.0.2",
    process: {
      terminal: false,
      user: { uid: 1000, gid: 1000 },
      args: ["sh"],
      env: ["A=old", "PATH=/bin"],
      cwd: "/",
    },
    root: { path: "rootfs" },
    mounts: [{ destination: "/opt/lib", type: "tmpfs", source: "tmpfs" }],
    linux: {},
  } as unknown as OciSpec;
}

Deno.test("CDI edits: env, device nodes, mounts, hooks and groups, in the spec's order", async () => {
  const root = await rootOwnedTempDir();
  try {
    const node = await fakeNode(root, "gpu0");
    await Deno.writeTextFile(`${root}/lib.so`, "lib\n");
    const cdi = `${root}/cdi`;
    await Deno.mkdir(cdi, { mode: 0o755 });
    await writeSpec(
      cdi,
      "gpu.json",
      spec("1.1.0", [
        dev("g0", {
          env: ["A=dev", "G=0"],
          netDevices: [{ hostInterfaceName: "ib0", name: "net0" }],
          deviceNodes: [{ path: "/dev/gpu0", hostPath: node, type: "c", major: 1, minor: 3 }],
          mounts: [
            { hostPath: root, containerPath: "/opt/lib", options: ["ro", "nosuid"] },
            // A bind mount whose type is a dummy, as the CDI spec allows.
            {
              hostPath: `${root}/lib.so`,
              containerPath: "/opt/lib.so",
              type: "none",
              options: ["bind"],
            },
          ],
          hooks: [{ hookName: "createContainer", path: "/bin/true", args: ["true", "x"] }],
          additionalGids: [0, 5, 900000],
        }),
      ], { containerEdits: { env: ["A=spec", "S=1"] } }),
    );
    const s = emptySpec();
    const warnings: string[] = [];
    const ctx = {
      dirs: [cdi],
      checked: true,
      gidMappings: [{ containerID: 0, hostID: 100000, size: 65536 }],
    };
    await applyCdiDevices(s, ["example.com/gpu=g0"], ctx, warnings);
    assertEquals(s.process.env, ["PATH=/bin", "S=1", "A=dev", "G=0"]);
    assertEquals(s.mounts.map((m) => [m.destination, m.type, m.source]), [
      ["/dev/gpu0", "bind", node],
      ["/opt/lib", "bind", root],
      ["/opt/lib.so", "bind", `${root}/lib.so`],
    ]);
    assert(s.mounts[1]!.options!.includes("rbind") && s.mounts[1]!.options!.includes("ro"));
    assertEquals(s.hooks, { createContainer: [{ path: "/bin/true", args: ["true", "x"] }] });
    assertEquals(s.process.user.additionalGids, [5]);
    assertEquals(warnings, [
      "CDI device example.com/gpu=g0: network interface ib0 not moved in (the container shares the host's network, where it is visible as is)",
      "CDI device example.com/gpu=g0: group 900000 is not mapped into the container, so it is not added",
    ]);

    // A node that is not there, or not what the spec says, is named.
    await writeSpec(
      cdi,
      "gpu.json",
      spec("0.5.0", [
        dev("gone", { deviceNodes: [{ path: "/dev/gpu1", hostPath: `${root}/gpu1` }] }),
        dev("block", { deviceNodes: [{ path: "/dev/gpu0", hostPath: node, type: "b" }] }),
        dev("minor", { deviceNodes: [{ path: "/dev/gpu0", hostPath: node, minor: 9 }] }),
        dev("hook", { hooks: [{ hookName: "prestart", path: `${root}/nohook` }] }),
      ]),
    );
    const fail = (name: string) =>
      applyCdiDevices(emptySpec(), [`example.com/gpu=${name}`], ctx, []);
    await assertRejects(() => fail("gone"), UsageError, `${root}/gpu1 does not exist`);
    await assertRejects(
      () => fail("block"),
      ConfigError,
      "the spec gives /dev/gpu0 type b, the node",
    );
    await assertRejects(() => fail("minor"), ConfigError, "minor 9, the node");
    await assertRejects(
      () => fail("hook"),
      ConfigError,
      `hook program ${root}/nohook is not a file`,
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

for (const helper of [true, false]) {
  const tag = helper ? "helper path" : "path B";
  Deno.test(`${tag}: a CDI device brings its env, node, mount and hook into the container`, async () => {
    const site = await runSite(helper);
    const image = await site.image("user");
    const cdi = `${site.dir}/cdi`;
    await Deno.mkdir(cdi, { mode: 0o755 });
    const node = await fakeNode(site.dir, "fakegpu0");
    const lib = `${site.dir}/gpulib`;
    await Deno.mkdir(lib, { mode: 0o755 });
    await Deno.writeTextFile(`${lib}/libgpu.so`, "gpu library\n", { mode: 0o644 });
    const hook = `${site.dir}/cdi-hook`;
    await Deno.writeTextFile(
      hook,
      '#!/bin/sh\nb=$(sed -n \'s/.*"bundle":"\\([^"]*\\)".*/\\1/p\')\necho hooked > "$b/rootfs/tmp/cdi-hook"\n',
    );
    await Deno.chmod(hook, 0o755);
    await writeSpec(
      cdi,
      "fake.json",
      spec("0.6.0", [
        dev("0", {
          env: ["GPU_VISIBLE=0"],
          deviceNodes: [{ path: "/dev/gpu0", hostPath: node }],
          mounts: [{
            hostPath: lib,
            containerPath: "/usr/lib/gpu",
            options: ["ro", "bind"],
            type: "bind",
          }],
        }),
      ], { containerEdits: { hooks: [{ hookName: "createContainer", path: hook }] } }),
    );
    await site.writeConfig({ cdiSpecDirs: [`${site.dir}/none`, cdi] });
    const script =
      'echo "$GPU_VISIBLE"; ls -l /dev/gpu0 | cut -c1; echo x > /dev/gpu0 && cat /dev/gpu0 && echo node-ok; ' +
      "cat /usr/lib/gpu/libgpu.so /tmp/cdi-hook; touch /usr/lib/gpu/w 2>/dev/null || echo ro";
    const r = await site.shoal("user", [
      "run",
      "--device",
      "example.com/gpu=all",
      image,
      "sh",
      "-c",
      script,
    ]);
    assertEquals(r.stdout, "0\nc\nnode-ok\ngpu library\nhooked\nro\n", r.stderr);

    const unknown = await site.shoal("user", [
      "run",
      "--device",
      "example.com/gpu=7",
      image,
      "true",
    ]);
    assertEquals(unknown.code, 2, unknown.stderr);
    assertMatch(
      unknown.stderr,
      /--device example\.com\/gpu=7: no such CDI device .*\(the devices there: example\.com\/gpu=0\)/,
    );

    // A broken spec file fails the runs that ask for CDI devices, and only those.
    await writeSpec(cdi, "broken.json", "{");
    const broken = await site.shoal("user", [
      "run",
      "--device",
      "example.com/gpu=0",
      image,
      "true",
    ]);
    assertMatch(broken.stderr, /CDI spec .*\/cdi\/broken\.json: not valid JSON/);
    assertEquals(broken.code, 1, broken.stderr);
    const plain = await site.shoal("user", ["run", image, "echo", "plain"]);
    assertEquals(plain.stdout, "plain\n", plain.stderr);
  });
}
