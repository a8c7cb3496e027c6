/**
 * CDI spec generators (mod/gpu/), `shoal cdi generate|list` and doctor's GPU
 * section, against fake GPU nodes (support/fake_gpus.ts): the generated spec
 * is consumed by real runs on both run paths as an unprivileged user.
 */
import {
  assert,
  assertEquals,
  assertMatch,
  assertStringIncludes,
  assertThrows,
} from "./support/assert.ts";
import { type RunSite, runSite } from "./support/run.ts";
import { fakeAmdNode, fakeNvidiaNode, fakePciGpu, LIBDIR, TWO_GPUS } from "./support/fake_gpus.ts";
import type { CdiSpec } from "../mod/cdi/spec.ts";
import { gpuReport } from "../mod/doctor/gpu.ts";
import { parseLdCache } from "../mod/sys/ldcache.ts";
import type { DoctorReport } from "../mod/doctor/report.ts";

const VERSION = "550.54.14";

let fuseSite: Promise<RunSite> | undefined;
/** One site without the helper for the tests that do not run containers on both paths. */
function site(): Promise<RunSite> {
  fuseSite ??= runSite(false);
  return fuseSite;
}

/** A fresh root-owned dir under the site, removed with it. */
async function tree(s: RunSite, name: string): Promise<string> {
  const dir = `${s.dir}/${name}`;
  await Deno.mkdir(dir, { mode: 0o755 });
  return dir;
}

function mountsOf(spec: CdiSpec): [string, string][] {
  return (spec.containerEdits?.mounts ?? []).map((m) => [m.containerPath, m.hostPath]);
}

Deno.test("linker cache: ldconfig's file read as ldconfig -p lists it", async () => {
  const expected = new TextDecoder().decode(
    (await new Deno.Command("ldconfig", { args: ["-p"] }).output()).stdout,
  ).split("\n").slice(1).filter((l) => l.includes("=>"))
    .map((l) => [l.trim().split(" ")[0], l.split("=> ")[1]]);
  const read = parseLdCache(await Deno.readFile("/etc/ld.so.cache"), "/etc/ld.so.cache").entries
    .map((l) => [l.soname, l.path]);
  assertEquals(read, expected);
  assertThrows(() => parseLdCache(new Uint8Array(64), "zeros"), Error, "not a glibc linker cache");
});

Deno.test("cdi generate: an NVIDIA node's GPUs by index and UUID, its nodes, driver libraries, nvidia-smi, firmware", async () => {
  const s = await site();
  const root = await tree(s, "nvidia");
  await fakeNvidiaNode(root, VERSION);
  const out = `${s.dir}/nvidia-out.json`;
  const r = await s.shoal("root", ["cdi", "generate", "--root", root, "--output", out]);
  assertEquals(r.code, 0, r.stderr);
  assertStringIncludes(r.stderr, `wrote ${out}: nvidia.com/gpu devices 0, ${TWO_GPUS[1]!.uuid}`);
  assertEquals((await Deno.stat(out)).mode! & 0o777, 0o644);
  const spec = JSON.parse(await Deno.readTextFile(out)) as CdiSpec;
  assertEquals([spec.cdiVersion, spec.kind], ["0.5.0", "nvidia.com/gpu"]);
  // Index 0 is the first GPU in PCI order (0000:3b, minor 1), whatever its minor.
  assertEquals(
    spec.devices.map((d) => [d.name, d.containerEdits.deviceNodes!.map((n) => n.path)]),
    [
      ["0", ["/dev/nvidia1"]],
      [TWO_GPUS[1]!.uuid, ["/dev/nvidia1"]],
      ["1", ["/dev/nvidia0"]],
      [TWO_GPUS[0]!.uuid, ["/dev/nvidia0"]],
      ["all", ["/dev/nvidia1", "/dev/nvidia0"]],
    ],
  );
  assertEquals(spec.devices[0]!.containerEdits.deviceNodes![0]!.hostPath, `${root}/dev/nvidia1`);
  assertEquals(spec.containerEdits!.deviceNodes!.map((n) => n.path), [
    "/dev/nvidiactl",
    "/dev/nvidia-uvm",
    "/dev/nvidia-uvm-tools",
  ]);
  const lib = (name: string) => `${root}${LIBDIR}/${name}`;
  assertEquals(mountsOf(spec).sort(), [
    [`/lib/firmware/nvidia/${VERSION}`, `${root}/lib/firmware/nvidia/${VERSION}`],
    ["/usr/bin/nvidia-smi", `${root}/usr/bin/nvidia-smi`],
    [`${LIBDIR}/libcuda.so.1`, lib(`libcuda.so.${VERSION}`)],
    [`${LIBDIR}/libnvidia-ml.so.1`, lib(`libnvidia-ml.so.${VERSION}`)],
  ]);
  for (const m of spec.containerEdits!.mounts!) {
    assertEquals(m.options, ["ro", "nosuid", "nodev", "bind"]);
  }

  // As a user: printed, the same spec.
  const printed = await s.shoal("user", ["cdi", "generate", "--root", root]);
  assertEquals(printed.code, 0, printed.stderr);
  assertEquals(JSON.parse(printed.stdout), spec);
});

Deno.test("cdi generate: an AMD node's GPUs with /dev/kfd, render and card nodes, /opt/rocm", async () => {
  const s = await site();
  const root = await tree(s, "amd");
  await fakeAmdNode(root);
  const r = await s.shoal("user", ["cdi", "generate", "--root", root]);
  assertEquals(r.code, 0, r.stderr);
  const spec = JSON.parse(r.stdout) as CdiSpec;
  assertEquals(spec.kind, "amd.com/gpu");
  assertEquals(
    spec.devices.map((d) => [d.name, d.containerEdits.deviceNodes!.map((n) => n.path)]),
    [
      ["0", ["/dev/dri/renderD128", "/dev/dri/card0"]],
      ["1", ["/dev/dri/renderD129", "/dev/dri/card1"]],
      ["all", ["/dev/dri/renderD128", "/dev/dri/card0", "/dev/dri/renderD129", "/dev/dri/card1"]],
    ],
  );
  assertEquals(spec.containerEdits!.deviceNodes, [{
    path: "/dev/kfd",
    hostPath: `${root}/dev/kfd`,
  }]);
  assertEquals(mountsOf(spec), [
    ["/opt/rocm", `${root}/opt/rocm-6.1.0`],
    ["/opt/rocm-6.1.0", `${root}/opt/rocm-6.1.0`],
  ]);

  // Without the /opt/rocm link: the newest versioned ROCm.
  await Deno.remove(`${root}/opt/rocm`);
  await Deno.mkdir(`${root}/opt/rocm-6.0.2`);
  await Deno.mkdir(`${root}/opt/rocm-6.1.0.1-broken`);
  const unlinked = await s.shoal("user", ["cdi", "generate", "--root", root]);
  assertEquals(mountsOf(JSON.parse(unlinked.stdout)), mountsOf(spec), unlinked.stderr);
});

Deno.test("cdi generate: as root writes the first spec dir; what is missing is said with its fix", async () => {
  const s = await site();
  const cdi = await tree(s, "gen-cdi");
  await s.writeConfig({ cdiSpecDirs: [`${cdi}/etc`, `${cdi}/run`] });
  const root = await tree(s, "gen-nvidia");
  await fakeNvidiaNode(root, VERSION);
  const r = await s.shoal("root", ["cdi", "generate", "--root", root]);
  assertEquals(r.code, 0, r.stderr);
  const written = await Deno.stat(`${cdi}/etc/nvidia.json`);
  assertEquals([written.mode! & 0o777, written.uid], [0o644, 0]);
  const listed = await s.shoal("user", ["cdi", "list"]);
  assertEquals(listed.code, 0, listed.stderr);
  assertMatch(listed.stdout, new RegExp(`^nvidia\\.com/gpu=0 +${cdi}/etc/nvidia\\.json$`, "m"));

  // nvidia-ctk's spec of the same kind beside it: said when generating, and by list.
  await Deno.writeTextFile(
    `${cdi}/etc/nvidia.yaml`,
    'cdiVersion: "0.5.0"\nkind: nvidia.com/gpu\ndevices:\n  - name: "0"\n    containerEdits:\n      env: ["X=1"]\n',
    { mode: 0o644 },
  );
  const again = await s.shoal("root", ["cdi", "generate", "--root", root]);
  assertEquals(again.code, 0, again.stderr);
  assertMatch(
    again.stderr,
    /nvidia\.yaml also defines nvidia\.com\/gpu devices: .*remove one of the files/,
  );
  const both = await s.shoal("user", ["cdi", "list"]);
  assertEquals(both.code, 1, both.stderr);
  assertMatch(
    both.stderr,
    /^shoal: error: CDI device nvidia\.com\/gpu=0 is defined both in .*nvidia\.json and in .*nvidia\.yaml/,
  );
  await Deno.remove(`${cdi}/etc/nvidia.yaml`);

  const fail = async (tree: string, args: string[], code: number, message: RegExp) => {
    const f = await s.shoal("root", ["cdi", "generate", "--root", tree, ...args]);
    assertEquals(f.code, code, f.stderr);
    assertMatch(f.stderr, message);
    assertEquals(f.stderr.trim().split("\n").length, 1, f.stderr);
  };
  const empty = await tree(s, "gen-empty");
  await fail(
    empty,
    [],
    1,
    /^shoal: error: no NVIDIA or AMD GPU under .*gen-empty \(run it on a GPU node/,
  );
  await fail(empty, ["--vendor", "amd"], 1, /no AMD GPU under .*this node has no AMD GPU/);
  const bare = await tree(s, "gen-bare");
  await fakePciGpu(bare, "0000:01:00.0", "0x10de", "nouveau");
  await fail(
    bare,
    [],
    1,
    /no NVIDIA driver under .*PCI 0000:01:00\.0 has the nouveau driver: .*modprobe nvidia/,
  );
  await fail(`${root}/missing`, [], 2, /--root .*missing: not a directory/);
  const early = await tree(s, "gen-early");
  await fakeNvidiaNode(early, VERSION, [{ ...TWO_GPUS[0]!, uuid: "GPU-????????-????-????" }]);
  const byIndex = await s.shoal("user", ["cdi", "generate", "--root", early]);
  assertEquals(byIndex.code, 0, byIndex.stderr);
  assertEquals((JSON.parse(byIndex.stdout) as CdiSpec).devices.map((d) => d.name), ["0", "all"]);
  assertMatch(
    byIndex.stderr,
    /GPU 0's UUID yet: it is named by its index only \(.*nvidia-smi -pm 1/,
  );
  await fail(root, ["--output", "/dev/null"], 2, /--output \/dev\/null: not a regular file/);
  await Deno.remove(`${root}/dev/nvidia-uvm`);
  await fail(
    root,
    ["--output", `${cdi}/x.json`],
    1,
    /nvidia-uvm does not exist \(.*nvidia-modprobe/,
  );
  assertEquals([...Deno.readDirSync(cdi)].map((e) => e.name).sort(), ["etc"]);
  const user = await s.shoal("user", ["cdi", "list", "--vendor", "nvidia"]);
  assertEquals(user.code, 2, user.stderr);
  await s.writeConfig();
});

Deno.test("cdi list: the devices of valid specs, one error line per invalid or untrusted file", async () => {
  const s = await site();
  const dir = await tree(s, "list");
  const [a, b] = [`${dir}/a`, `${dir}/b`];
  await Deno.mkdir(a, { mode: 0o755 });
  await Deno.mkdir(b, { mode: 0o755 });
  const spec = (kind: string, names: string[], extra = {}) =>
    JSON.stringify({
      cdiVersion: "0.5.0",
      kind,
      devices: names.map((name) => ({ name, containerEdits: { env: [`D=${name}`], ...extra } })),
    });
  await Deno.writeTextFile(`${a}/one.json`, spec("example.com/gpu", ["0", "1"]), { mode: 0o644 });
  await Deno.writeTextFile(`${b}/two.json`, spec("example.com/gpu", ["1"]), { mode: 0o644 });
  await Deno.writeTextFile(
    `${b}/bad.json`,
    spec("example.com/nic", ["x"], { additionalGids: [5] }),
    {
      mode: 0o644,
    },
  );
  await Deno.writeTextFile(`${b}/open.json`, spec("example.com/fpga", ["f"]));
  await Deno.chmod(`${b}/open.json`, 0o666);
  // A dir users cannot read: said, and the others still listed.
  const closed = `${dir}/closed`;
  await Deno.mkdir(closed, { mode: 0o700 });
  await s.writeConfig({ cdiSpecDirs: [a, b, closed] });
  try {
    const r = await s.shoal("user", ["cdi", "list"]);
    assertEquals(r.code, 1, r.stderr);
    assertEquals(r.stdout.trim().split("\n").map((l) => l.split(/ +/)), [
      ["DEVICE", "SPEC", "FILE"],
      ["example.com/gpu=0", `${a}/one.json`],
      ["example.com/gpu=1", `${b}/two.json`],
    ]);
    const lines = r.stderr.trim().split("\n");
    assertEquals(lines.length, 3, r.stderr);
    assertMatch(
      lines[0]!,
      /^shoal: error: CDI spec .*\/b\/bad\.json: devices\.0\.containerEdits\.additionalGids: expected cdiVersion 0\.7\.0/,
    );
    assertMatch(lines[1]!, /^shoal: error: CDI spec .*\/b\/open\.json: .*writable/);
    assertMatch(lines[2]!, /^shoal: error: CDI spec dir .*\/closed: cannot read: /);
    const json = await s.shoal("user", ["cdi", "list", "--format", "json"]);
    const listed = JSON.parse(json.stdout);
    assertEquals(listed.devices.map((d: { device: string }) => d.device), [
      "example.com/gpu=0",
      "example.com/gpu=1",
    ]);
    assertEquals(listed.errors.map((e: { file: string }) => e.file), [
      `${b}/bad.json`,
      `${b}/open.json`,
      closed,
    ]);
  } finally {
    await s.writeConfig();
  }
});

Deno.test("doctor's GPU section: no GPU, an NVIDIA node with a stale spec, an AMD node, a GPU without its driver", async () => {
  const s = await site();
  const none = await gpuReport(await tree(s, "doc-none"), [], true, {});
  assertEquals(none.checks, [{
    id: "gpus",
    title: "GPUs",
    status: "ok",
    detail: "none on this node",
  }]);
  assertEquals(none.jobGpus, null);

  // Specs generated for driver 550, then the driver updated to 560.
  const old = await tree(s, "doc-old");
  await fakeNvidiaNode(old, VERSION);
  const cdi = await tree(s, "doc-cdi");
  const gen = await s.shoal("root", [
    "cdi",
    "generate",
    "--root",
    old,
    "--output",
    `${cdi}/nvidia.json`,
  ]);
  assertEquals(gen.code, 0, gen.stderr);
  const node = await tree(s, "doc-new");
  await fakeNvidiaNode(node, "560.35.03");
  const stale = await gpuReport(node, [cdi], true, {
    SLURM_JOB_GPUS: "0-1",
    CUDA_VISIBLE_DEVICES: "0",
  });
  assertEquals(stale.nvidia?.driverVersion, "560.35.03");
  assertEquals(stale.nvidia?.gpus.map((g) => [g.index, g.uuid, g.busId]), [
    [0, TWO_GPUS[1]!.uuid, "0000:3b:00.0"],
    [1, TWO_GPUS[0]!.uuid, "0000:86:00.0"],
  ]);
  assertEquals(stale.specs.map((f) => [f.path, f.status]), [[`${cdi}/nvidia.json`, "stale"]]);
  assertEquals(stale.jobGpus, { source: "SLURM_JOB_GPUS", value: "0-1", indices: ["0", "1"] });
  const byId = (id: string) => stale.checks.find((c) => c.id === id);
  assertEquals(byId("gpus")?.detail, "2 NVIDIA (driver 560.35.03)");
  assertEquals(byId("cdi-nvidia")?.status, "warn");
  assertEquals(byId("cdi-spec")?.status, "warn");
  assertMatch(
    byId("cdi-spec")!.detail,
    new RegExp(
      `stale: it names lib\\S+\\.so\\.${
        VERSION.replaceAll(".", "\\.")
      }, the driver is 560\\.35\\.03`,
    ),
  );
  assertMatch(byId("cdi-spec")!.fix!, /^as root: shoal cdi generate --vendor nvidia again/);
  const fresh = await gpuReport(old, [cdi], true, {});
  assertEquals(fresh.checks.map((c) => [c.id, c.status]), [["gpus", "ok"], ["cdi-nvidia", "ok"]]);
  // A host file the spec names, gone (the driver's programs uninstalled).
  await Deno.remove(`${old}/usr/bin/nvidia-smi`);
  const gone = await gpuReport(old, [cdi], true, {});
  assertEquals(gone.specs[0]?.problem, `${old}/usr/bin/nvidia-smi does not exist`);

  const amd = await tree(s, "doc-amd");
  await fakeAmdNode(amd);
  const noSpec = await gpuReport(amd, [`${cdi}/none`], true, {});
  assertEquals(noSpec.amd?.gpus.map((g) => g.renderMinor), [128, 129]);
  assertEquals(noSpec.checks.map((c) => [c.id, c.status, c.fix]), [
    ["gpus", "ok", undefined],
    ["cdi-amd", "warn", "as root: shoal cdi generate --vendor amd"],
  ]);

  const bare = await tree(s, "doc-bare");
  await fakePciGpu(bare, "0000:01:00.0", "0x10de");
  const driverless = await gpuReport(bare, [], true, {});
  assertEquals(driverless.checks.map((c) => [c.id, c.status]), [["gpus", "ok"], [
    "gpu-driver-nvidia",
    "warn",
  ]]);
  assertMatch(driverless.checks[1]!.detail, /NVIDIA GPU on PCI 0000:01:00\.0 \(no driver\)/);
  assertEquals(driverless.checks[1]!.fix, "install NVIDIA's driver and load it (modprobe nvidia)");

  // The command: JSON and the printed section (this machine has no GPU).
  const json = await s.shoal("user", ["doctor", "--format", "json"]);
  const report = JSON.parse(json.stdout) as DoctorReport;
  assertEquals(report.gpu.checks[0]!.id, "gpus");
  assert("jobGpus" in report.gpu);
  const text = await s.shoal("user", ["doctor"]);
  assertMatch(
    text.stdout,
    /\nGPUs and CDI devices:\nCHECK +STATUS +DETAIL\nGPUs +ok +none on this node\n/,
  );
  assertStringIncludes(
    text.stdout,
    "GPUs of this job: all of the node's (no job GPU variable is set)",
  );
  const inJob = await s.shoal("user", ["doctor"], { env: { SLURM_STEP_GPUS: "1,3" } });
  assertStringIncludes(inJob.stdout, "GPUs of this job: 1, 3 (SLURM_STEP_GPUS=1,3)");
});

for (const helper of [true, false]) {
  const tag = helper ? "helper path" : "path B";
  Deno.test(`${tag}: a generated NVIDIA spec gives a user's container its GPU's node, the driver libraries and nvidia-smi (--device, --gpus)`, async () => {
    const s = await runSite(helper);
    const image = await s.image("user");
    const root = await tree(s, "node");
    await fakeNvidiaNode(root, VERSION);
    await s.writeConfig({ cdiSpecDirs: [`${s.dir}/cdi`] });
    const gen = await s.shoal("root", ["cdi", "generate", "--root", root]);
    assertEquals(gen.code, 0, gen.stderr);
    const script = "ls /dev | grep nvidia | tr '\\n' ' '; echo; " +
      `grep -c -e "libcuda ${VERSION}" -e "libnvidia-ml ${VERSION}" ${LIBDIR}/libcuda.so.1 ${LIBDIR}/libnvidia-ml.so.1; ` +
      `nvidia-smi; touch ${LIBDIR}/libcuda.so.1 2>/dev/null || echo ro; ` +
      `ls ${LIBDIR} | grep -c -e libz -e old`;
    const r = await s.shoal("user", [
      "run",
      "--device",
      "nvidia.com/gpu=0",
      image,
      "sh",
      "-c",
      script,
    ]);
    assertEquals(
      r.stdout,
      "nvidia-uvm nvidia-uvm-tools nvidia1 nvidiactl \n" +
        `${LIBDIR}/libcuda.so.1:1\n${LIBDIR}/libnvidia-ml.so.1:1\n` +
        `fake nvidia-smi ${VERSION}\nro\n0\n`,
      r.stderr,
    );
    const byUuid = await s.shoal("user", [
      "run",
      "--device",
      `nvidia.com/gpu=${TWO_GPUS[0]!.uuid}`,
      image,
      "ls",
      "/dev/nvidia0",
    ]);
    assertEquals(byUuid.stdout, "/dev/nvidia0\n", byUuid.stderr);

    // --gpus maps onto the generated devices: GPU 1 of the node (bus 86, /dev/nvidia0) is 0 inside.
    const gpus = await s.shoal("user", [
      "run",
      "--gpus",
      "device=1",
      image,
      "sh",
      "-c",
      'ls /dev | grep "^nvidia[0-9]"; echo "$CUDA_VISIBLE_DEVICES $NVIDIA_VISIBLE_DEVICES"; nvidia-smi',
    ]);
    assertEquals(gpus.stdout, `nvidia0\n0 1\nfake nvidia-smi ${VERSION}\n`, gpus.stderr);
  });
}
