/**
 * What Slurm does to a step from outside, as an unprivileged user: a signal
 * sent to the step (`scancel --signal`, as `srun --signal` sends before the
 * time limit) reaches each rank once, on both run paths; and a step that
 * runs past its time limit is ended with nothing of it left on the node (its
 * processes, run directories, join files and /dev/shm files). Slurm checks
 * time limits every 30 s and takes whole minutes, so the last test takes
 * one to two minutes.
 */
import { assert, assertEquals, assertMatch } from "./support/assert.ts";
import { eventually, runSite } from "./support/run.ts";
import { cancelJob, startSlurm, type TestSlurm } from "./support/slurm.ts";
import { openRunBase } from "../mod/runtime/rundir.ts";

const sorted = (text: string) => text.trim().split("\n").filter((l) => l !== "").sort();

/** No process of a job is left on the node (within 15 s: Slurm's KillWait, then KILL). */
async function assertNothingLeft(slurm: TestSlurm): Promise<void> {
  assert(
    await eventually(() => Promise.resolve(slurm.jobProcesses().length === 0), 15_000),
    `left: ${slurm.jobProcesses().join("; ")}`,
  );
}

/** The run base's entries (bundles and the .join directory's files), as the user has them. */
function runFiles(uid: number): string[] {
  const base = openRunBase({ uid }, false)?.path;
  if (base === undefined) return [];
  const list = (dir: string): string[] => {
    try {
      return [...Deno.readDirSync(dir)].map((e) => e.name);
    } catch {
      return [];
    }
  };
  return [
    ...list(base).filter((n) => n !== ".join" && !n.startsWith(".")),
    ...list(`${base}/.join`),
  ];
}

for (const helper of [true, false]) {
  const tag = helper ? "path A (helper)" : "path B (squashfuse)";
  Deno.test(`${tag}: a signal sent to a step reaches each rank once`, async () => {
    const site = await runSite(helper);
    const image = await site.image("user");
    const user = (await site.user("user"))!;
    await using slurm = await startSlurm();
    const name = `signalled-${crypto.randomUUID().slice(0, 8)}`;
    // Each rank counts USR1 and says so; it stops at TERM (the second scancel).
    const rank = "c=0; trap 'c=$((c+1)); echo \"rank $SLURM_PROCID got $c\"' USR1; " +
      `trap 'exit 0' TERM; touch /tmp/${name}-$SLURM_PROCID; ` +
      "i=0; while [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done";
    const [cmd, ...args] = slurm.argv(user, "srun", [
      "-n",
      "2",
      `--job-name=${name}`,
      site.bin,
      "run",
      image,
      "sh",
      "-c",
      rank,
    ]);
    const srun = new Deno.Command(cmd!, { args, cwd: user.home, stdout: "piped", stderr: "piped" })
      .spawn();
    const out = new Response(srun.stdout).text();
    const err = new Response(srun.stderr).text();
    try {
      // Both ranks are in the container and have set their traps.
      assert(
        await eventually(async () => {
          const r = await slurm.run(user, "sh", [
            "-c",
            `ls /proc/*/root/tmp/${name}-* 2>/dev/null | sort -u | wc -l`,
          ]);
          return Number(r.stdout.trim()) >= 2;
        }, 20_000),
        "the ranks started",
      );
      const usr1 = await slurm.run(user, "scancel", ["--signal=USR1", `--name=${name}`]);
      assertEquals(usr1.code, 0, usr1.stderr);
      await new Promise((r) => setTimeout(r, 1500));
      const term = await slurm.run(user, "scancel", [`--name=${name}`]);
      assertEquals(term.code, 0, term.stderr);
      await srun.status;
      // Slurm signals every process of the step itself, the rank's included: shoal passes on
      // none of those, and nothing else sits between shoal and the rank (shoal-enter).
      assertEquals(sorted(await out), ["rank 0 got 1", "rank 1 got 1"], await err);
      await assertNothingLeft(slurm);
    } finally {
      await cancelJob(slurm, user, name, srun);
    }
  });
}

Deno.test("path A (helper): a step past its time limit is ended, and nothing of it stays", async () => {
  const site = await runSite(true);
  const image = await site.image("user");
  const user = (await site.user("user"))!;
  await using slurm = await startSlurm();
  const shm = `shoal-limit-${crypto.randomUUID().slice(0, 8)}`;
  const before = runFiles(user.uid);
  const r = await slurm.run(user, "srun", [
    "-n",
    "2",
    "--time=1",
    site.bin,
    "run",
    image,
    "sh",
    "-c",
    `touch /dev/shm/${shm}-$SLURM_PROCID; sleep 600`,
  ]);
  assert(r.code !== 0, "the step ran to its end");
  assertMatch(r.stderr, /DUE TO TIME LIMIT/);
  await assertNothingLeft(slurm);
  assertEquals(runFiles(user.uid), before);
  assertEquals([...Deno.readDirSync("/dev/shm")].filter((e) => e.name.startsWith(shm)), []);
});
