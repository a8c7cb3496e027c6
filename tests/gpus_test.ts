/**
 * `shoal run --gpus` (mod/gpu/): Docker's syntax mapped to the CDI devices of
 * the node's GPU vendor, NVIDIA-like and AMD-like specs written here with fake
 * device nodes (/dev/null's 1:3) in the test's spec dir; the job's GPUs only,
 * renumbered from 0 inside; real runs on both run paths as an unprivileged
 * user, and under the test Slurm. Slurm's gres/gpu plugin needs GPUs (NVML or
 * RSMI) to start, so the jobs here get their GPU variables the way the plugin
 * would pass them: in the environment srun gives the task.
 */
import { assert, assertEquals, assertMatch, assertThrows } from "./support/assert.ts";
import { runSite } from "./support/run.ts";
import { rootOwnedTempDir } from "./support/install.ts";
import { fakeNode, writeSpec } from "./support/cdi.ts";
import { startSlurm } from "./support/slurm.ts";
import { parseGpusOption } from "../mod/gpu/option.ts";
import { jobGpus } from "../mod/gpu/job.ts";
import { selectGpus } from "../mod/gpu/select.ts";
import { readDevices } from "../mod/cdi/registry.ts";
import { ConfigError, UsageError } from "../mod/errors.ts";

const uuid = (i: number) => `GPU-${i}aaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee`;

/** A spec as nvidia-ctk and `shoal cdi generate` write it: by index, by UUID, and "all". */
function nvidiaSpec(nodes: string, count: number) {
  const gpu = (i: number) => ({
    deviceNodes: [{ path: `/dev/nvidia${i}`, hostPath: `${nodes}/nvidia${i}` }],
  });
  const all = [...Array(count).keys()];
  return {
    cdiVersion: "0.5.0",
    kind: "nvidia.com/gpu",
    containerEdits: {
      env: ["NVIDIA_VISIBLE_DEVICES=void"],
      deviceNodes: [{ path: "/dev/nvidiactl", hostPath: `${nodes}/nvidiactl` }],
    },
    devices: [
      ...all.map((i) => ({ name: String(i), containerEdits: gpu(i) })),
      ...all.map((i) => ({ name: uuid(i), containerEdits: gpu(i) })),
      {
        name: "all",
        containerEdits: { deviceNodes: all.flatMap((i) => gpu(i).deviceNodes) },
      },
    ],
  };
}

function amdSpec(nodes: string, count: number) {
  const gpu = (i: number) => ({
    deviceNodes: [{ path: `/dev/dri/renderD${128 + i}`, hostPath: `${nodes}/renderD${128 + i}` }],
  });
  const all = [...Array(count).keys()];
  return {
    cdiVersion: "0.5.0",
    kind: "amd.com/gpu",
    containerEdits: { deviceNodes: [{ path: "/dev/kfd", hostPath: `${nodes}/kfd` }] },
    devices: [
      ...all.map((i) => ({ name: String(i), containerEdits: gpu(i) })),
      { name: "all", containerEdits: { deviceNodes: all.flatMap((i) => gpu(i).deviceNodes) } },
    ],
  };
}

/** The fake nodes both specs name, for `count` GPUs. */
async function fakeGpuNodes(dir: string, count: number): Promise<void> {
  await Deno.mkdir(dir, { mode: 0o755 });
  for (const name of ["nvidiactl", "kfd"]) await fakeNode(dir, name);
  for (let i = 0; i < count; i++) {
    await fakeNode(dir, `nvidia${i}`);
    await fakeNode(dir, `renderD${128 + i}`);
  }
}

Deno.test("--gpus is parsed as Docker writes it", () => {
  assertEquals(parseGpusOption("all"), { option: "--gpus all", all: true });
  assertEquals(parseGpusOption("2"), { option: "--gpus 2", count: 2 });
  assertEquals(parseGpusOption("device=1"), { option: "--gpus device=1", devices: ["1"] });
  assertEquals(parseGpusOption('"device=0,2"'), {
    option: '--gpus "device=0,2"',
    devices: ["0", "2"],
  });
  assertEquals(parseGpusOption(`device=${uuid(3)},${uuid(3)}`), {
    option: `--gpus device=${uuid(3)},${uuid(3)}`,
    devices: [uuid(3)],
  });
  for (
    const [bad, why] of [
      ["0", "a count of GPUs starts at 1"],
      ["two", "not a GPU selection"],
      ["device=", "an empty device"],
      ["device=0,,1", "an empty device"],
      ["device=-1", 'device name "-1"'],
    ]
  ) {
    const err = assertThrows(() => parseGpusOption(bad!), UsageError);
    assertEquals(err.message, `--gpus ${bad}: ${err.message.split(": ").slice(1).join(": ")}`);
    assertMatch(err.message, new RegExp(why!));
    assertEquals(err.hint, "give all, a count (--gpus 2), device=0,2 or device=GPU-<uuid>");
  }
});

Deno.test("the job's GPUs: Slurm's step, then job variable, then CUDA's and ROCm's", () => {
  assertEquals(jobGpus({ PATH: "/bin" }), undefined);
  assertEquals(
    jobGpus({ SLURM_STEP_GPUS: "2,3", SLURM_JOB_GPUS: "0-3", CUDA_VISIBLE_DEVICES: "0,1" }),
    { source: "SLURM_STEP_GPUS", value: "2,3", indices: ["2", "3"] },
  );
  assertEquals(jobGpus({ SLURM_JOB_GPUS: "1-3", CUDA_VISIBLE_DEVICES: "0,1" })?.indices, [
    "1",
    "2",
    "3",
  ]);
  assertEquals(jobGpus({ CUDA_VISIBLE_DEVICES: `${uuid(1)},0`, ROCR_VISIBLE_DEVICES: "5" }), {
    source: "CUDA_VISIBLE_DEVICES",
    value: `${uuid(1)},0`,
    indices: [uuid(1), "0"],
  });
  assertEquals(
    jobGpus({ ROCR_VISIBLE_DEVICES: "1", GPU_DEVICE_ORDINAL: "0" })?.source,
    "ROCR_VISIBLE_DEVICES",
  );
  assertEquals(jobGpus({ GPU_DEVICE_ORDINAL: "0" })?.indices, ["0"]);
  // A job with other GRES only, and one hiding every GPU.
  assertEquals(jobGpus({ CUDA_VISIBLE_DEVICES: "NoDevFiles" })?.indices, []);
  assertEquals(jobGpus({ SLURM_JOB_GPUS: "" })?.indices, []);
});

Deno.test("--gpus chooses among the node's GPUs or the job's, numbered from 0 inside", async () => {
  const root = await rootOwnedTempDir();
  try {
    const dir = `${root}/cdi`;
    await Deno.mkdir(dir, { mode: 0o755 });
    await writeSpec(dir, "nvidia.json", nvidiaSpec("/dev", 4));
    const known = await readDevices([dir], true);
    const pick = (value: string, env: Record<string, string> = {}) =>
      selectGpus(known, parseGpusOption(value), jobGpus(env), [dir]);
    const chosen = (value: string, env: Record<string, string> = {}) => {
      const s = pick(value, env);
      return [s.host.join(","), s.container.join(","), s.devices.join(" ")];
    };

    // Each GPU once, by index even where named by UUID; the "all" device is not one of them.
    assertEquals(chosen("all"), [
      "0,1,2,3",
      "0,1,2,3",
      "nvidia.com/gpu=0 nvidia.com/gpu=1 nvidia.com/gpu=2 nvidia.com/gpu=3",
    ]);
    assertEquals(chosen("2"), ["0,1", "0,1", "nvidia.com/gpu=0 nvidia.com/gpu=1"]);
    assertEquals(chosen("device=1"), ["1", "0", "nvidia.com/gpu=1"]);
    assertEquals(chosen(`device=${uuid(2)}`), ["2", "0", "nvidia.com/gpu=2"]);
    assertEquals(chosen(`device=3,1,${uuid(3)}`), [
      "3,1",
      "1,0",
      "nvidia.com/gpu=3 nvidia.com/gpu=1",
    ]);

    const many = assertThrows(() => pick("5"), UsageError);
    assertEquals(many.message, "--gpus 5: only 4 GPUs on this node: 0, 1, 2, 3");
    const unknown = assertThrows(() => pick("device=7"), UsageError);
    assertEquals(unknown.message, "--gpus device=7: no GPU 7 on this node");
    assertMatch(unknown.hint!, new RegExp(`^the GPUs there: 0, 1, 2, 3, ${uuid(0)}, `));

    // In a job: its GPUs only, whatever the node has.
    const job = { SLURM_JOB_GPUS: "1,3", CUDA_VISIBLE_DEVICES: "0,1" };
    assertEquals(chosen("all", job), ["1,3", "0,1", "nvidia.com/gpu=1 nvidia.com/gpu=3"]);
    assertEquals(chosen("1", job), ["1", "0", "nvidia.com/gpu=1"]);
    assertEquals(chosen("device=3", job), ["3", "0", "nvidia.com/gpu=3"]);
    assertEquals(chosen(`device=${uuid(3)}`, job)[0], "3");
    assertEquals(chosen("all", { CUDA_VISIBLE_DEVICES: `${uuid(2)}` })[0], "2");
    const outside = assertThrows(() => pick("device=0", job), UsageError);
    assertEquals(outside.message, "--gpus device=0: GPU 0 is not one of this job's GPUs");
    assertEquals(outside.hint, "this job may use 1, 3 (SLURM_JOB_GPUS=1,3)");
    assertEquals(
      assertThrows(() => pick("device=7", job), UsageError).message,
      "--gpus device=7: no GPU 7 on this node",
    );
    const tooMany = assertThrows(() => pick("3", job), UsageError);
    assertEquals(tooMany.message, "--gpus 3: only 2 GPUs in this job (SLURM_JOB_GPUS=1,3): 1, 3");
    const none = assertThrows(
      () => pick("all", { CUDA_VISIBLE_DEVICES: "NoDevFiles" }),
      UsageError,
    );
    assertEquals(
      none.message,
      "--gpus all: this job has no GPUs (CUDA_VISIBLE_DEVICES=NoDevFiles)",
    );
    const stale = assertThrows(() => pick("all", { SLURM_STEP_GPUS: "4" }), ConfigError);
    assertMatch(
      stale.message,
      /^--gpus all: SLURM_STEP_GPUS=4 names GPU 4, which the CDI specs in .* do not have \(they have 0, 1, 2, 3\)$/,
    );

    // AMD's kind alone is AMD's; both vendors' kinds: --device must say which.
    await Deno.remove(`${dir}/nvidia.json`);
    await writeSpec(dir, "amd.json", amdSpec("/dev", 2));
    const amd = selectGpus(await readDevices([dir], true), parseGpusOption("all"), undefined, [
      dir,
    ]);
    assertEquals([amd.kind, amd.devices], ["amd.com/gpu", ["amd.com/gpu=0", "amd.com/gpu=1"]]);
    await writeSpec(dir, "nvidia.json", nvidiaSpec("/dev", 4));
    const mixed = await readDevices([dir], true);
    const both = assertThrows(
      () => selectGpus(mixed, parseGpusOption("2"), undefined, [dir]),
      ConfigError,
    );
    assertEquals(
      both.message,
      "--gpus 2: this node has CDI specs for both NVIDIA and AMD GPUs, so --gpus cannot tell which",
    );
    assertMatch(both.hint!, /--device nvidia\.com\/gpu=all or --device amd\.com\/gpu=0/);
    const other = new Map([...mixed].filter(([k]) => !k.includes("/gpu=")));
    const nothing = assertThrows(
      () => selectGpus(other, parseGpusOption("all"), undefined, [dir]),
      ConfigError,
    );
    assertEquals(
      nothing.message,
      `--gpus all: no GPU CDI spec (nvidia.com/gpu or amd.com/gpu) is installed in ${dir}`,
    );
    assertMatch(nothing.hint!, /shoal cdi generate/);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

/** What the container sees: its GPU nodes and visibility variables, on one line. */
const SHOW = "echo $(cd /dev && ls -d nvidia* kfd dri/* 2>/dev/null) " +
  '"CVD=$CUDA_VISIBLE_DEVICES NVD=$NVIDIA_VISIBLE_DEVICES ROCR=$ROCR_VISIBLE_DEVICES HIP=$HIP_VISIBLE_DEVICES"';

/** A site whose spec dir is `cdi` (empty), with 4 fake GPUs' nodes. */
async function gpuSite(helper: boolean) {
  const site = await runSite(helper);
  const nodes = `${site.dir}/dev`;
  await fakeGpuNodes(nodes, 4);
  const cdi = `${site.dir}/cdi`;
  await Deno.mkdir(cdi, { mode: 0o755 });
  await site.writeConfig({ cdiSpecDirs: [cdi] });
  return { site, nodes, cdi, image: await site.image("user") };
}

for (const helper of [true, false]) {
  const tag = helper ? "helper path" : "path B";
  Deno.test(`${tag}: --gpus gives a user's container its GPUs' nodes only, renumbered`, async () => {
    const { site, nodes, cdi, image } = await gpuSite(helper);
    const run = (gpus: string, env: Record<string, string> = {}, options: string[] = []) =>
      site.shoal("user", ["run", "--gpus", gpus, ...options, image, "sh", "-c", SHOW], { env });

    const none = await run("all");
    assertEquals(none.code, 1, none.stderr);
    assertMatch(
      none.stderr,
      /--gpus all: no GPU CDI spec \(nvidia\.com\/gpu or amd\.com\/gpu\) is installed in .*\/cdi .*shoal cdi generate/,
    );

    await writeSpec(cdi, "nvidia.json", nvidiaSpec(nodes, 4));
    const out = async (gpus: string, env: Record<string, string> = {}, options: string[] = []) => {
      const r = await run(gpus, env, options);
      assertEquals(r.code, 0, r.stderr);
      return r.stdout;
    };
    assertEquals(await out("2"), "nvidia0 nvidia1 nvidiactl CVD=0,1 NVD=0,1 ROCR= HIP=\n");
    assertEquals(await out("device=3,1"), "nvidia1 nvidia3 nvidiactl CVD=1,0 NVD=3,1 ROCR= HIP=\n");
    assertEquals(await out(`device=${uuid(2)}`), "nvidia2 nvidiactl CVD=0 NVD=2 ROCR= HIP=\n");
    // GPUs given to this process (by a batch system): all is those, numbered from 0.
    const given = { CUDA_VISIBLE_DEVICES: "1,3" };
    assertEquals(await out("all", given), "nvidia1 nvidia3 nvidiactl CVD=0,1 NVD=1,3 ROCR= HIP=\n");
    assertEquals(
      await out("all", given, ["-e", "CUDA_VISIBLE_DEVICES=1"]),
      "nvidia1 nvidia3 nvidiactl CVD=1 NVD=1,3 ROCR= HIP=\n",
    );

    const many = await run("5");
    assertEquals(many.code, 2, many.stderr);
    assertMatch(many.stderr, /--gpus 5: only 4 GPUs on this node: 0, 1, 2, 3/);
    const outside = await run("device=0", given);
    assertEquals(outside.code, 2, outside.stderr);
    assertMatch(
      outside.stderr,
      /--gpus device=0: GPU 0 is not one of this job's GPUs .*this job may use 1, 3 \(CUDA_VISIBLE_DEVICES=1,3\)/,
    );

    await Deno.remove(`${cdi}/nvidia.json`);
    await writeSpec(cdi, "amd.json", amdSpec(nodes, 4));
    assertEquals(
      await out("all", { ROCR_VISIBLE_DEVICES: "2,1", HIP_VISIBLE_DEVICES: "2,1" }),
      "dri/renderD129 dri/renderD130 kfd CVD= NVD= ROCR=1,0 HIP=0,1\n",
    );
    await writeSpec(cdi, "nvidia.json", nvidiaSpec(nodes, 4));
    const both = await run("all");
    assertEquals(both.code, 1, both.stderr);
    assertMatch(
      both.stderr,
      /CDI specs for both NVIDIA and AMD GPUs.*--device nvidia\.com\/gpu=all/,
    );
  });
}

Deno.test("under Slurm: a job step's --gpus gets the job's GPUs only, renumbered, on both run paths", async (t) => {
  const slurm = await startSlurm();
  try {
    for (const helper of [true, false]) {
      await t.step(helper ? "helper path" : "path B", async () => {
        const { site, nodes, cdi, image } = await gpuSite(helper);
        await writeSpec(cdi, "nvidia.json", nvidiaSpec(nodes, 4));
        const user = (await site.user("user"))!;
        const srun = (gpus: string, env: Record<string, string>) =>
          slurm.run(user, "srun", [
            "-n",
            "1",
            site.bin,
            "run",
            "--gpus",
            gpus,
            image,
            "sh",
            "-c",
            SHOW,
          ], env);
        // As the gres/gpu plugin passes them under ConstrainDevices: CUDA's relative to the job.
        const job = {
          SLURM_JOB_GPUS: "1,3",
          CUDA_VISIBLE_DEVICES: "0,1",
          GPU_DEVICE_ORDINAL: "0,1",
        };
        const all = await srun("all", job);
        assertEquals(
          all.stdout,
          "nvidia1 nvidia3 nvidiactl CVD=0,1 NVD=1,3 ROCR= HIP=\n",
          all.stderr,
        );
        const one = await srun("device=3", job);
        assertEquals(one.stdout, "nvidia3 nvidiactl CVD=0 NVD=3 ROCR= HIP=\n", one.stderr);
        const step = await srun("all", { ...job, SLURM_STEP_GPUS: "2" });
        assertEquals(step.stdout, "nvidia2 nvidiactl CVD=0 NVD=2 ROCR= HIP=\n", step.stderr);
        const outside = await srun("device=0", job);
        assert(outside.code !== 0, outside.stdout);
        assertMatch(outside.stderr, /--gpus device=0: GPU 0 is not one of this job's GPUs/);
      });
    }
  } finally {
    await slurm.stop();
  }
});
