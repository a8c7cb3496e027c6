/**
 * `srun ... shoal run` under a real Slurm (tests/support/slurm.ts), as an
 * unprivileged user, on both run paths: the PMI socket and PMIx's directory
 * reach the ranks, Slurm's variables and CPU binding survive, sbatch works,
 * and scancel leaves nothing behind.
 */
import { assert, assertEquals } from "./support/assert.ts";
import { eventually, runSite } from "./support/run.ts";
import type { Result } from "./support/shoal.ts";
import { cancelJob, pmiExchange, startSlurm, type TestSlurm, wrapped } from "./support/slurm.ts";
import type { TestUser } from "./support/users.ts";
import { openRunBase } from "../mod/runtime/rundir.ts";
import { JOIN_DIR } from "../mod/runtime/join.ts";

/** Output lines sorted (ranks print in any order). */
const sorted = (text: string) => text.trim().split("\n").map((l) => l.trimEnd()).sort();

/** The task prints its PMI socket, then runs pmiExchange(more) in the container. */
function pmiRanks(bin: string, image: string, more = ""): string[] {
  return wrapped(
    'echo "outer $PMI_RANK $(readlink /proc/self/fd/$PMI_FD)"',
    bin,
    image,
    pmiExchange(more),
  );
}

/** Both ranks got their own socket at fd 3 and completed the exchange. */
function assertPmi(r: Result, more = ""): void {
  assertEquals(r.code, 0, r.stderr);
  const lines = sorted(r.stdout);
  assertEquals(lines.length, 4, r.stdout + r.stderr);
  for (const rank of [0, 1]) {
    const outer = lines.find((l) => l.startsWith(`outer ${rank} socket:[`));
    assert(outer !== undefined, r.stdout);
    assertEquals(
      lines.find((l) => l.startsWith(`rank ${rank} `)),
      `rank ${rank} of 2 fd 3 ${outer.split(" ").at(-1)} ` +
        `cmd=response_to_init cmd=barrier_out cmd=finalize_ack${more}`,
    );
  }
}

for (const helper of [true, false]) {
  const tag = helper ? "path A (helper)" : "path B (squashfuse)";
  Deno.test(`${tag}: srun shoal run under Slurm, as a user`, async (t) => {
    const site = await runSite(helper);
    const image = await site.image("user");
    const user = (await site.user("user"))!;
    const slurm = await startSlurm();
    try {
      await t.step(
        "--mpi=pmi2: the PMI socket moves to fd 3, the same socket, and PMI works",
        async () => {
          const more = " step $SLURM_STEP_ID $OMPI_T $MPICH_T $UCX_T $FI_T";
          const r = await slurm.run(
            user,
            "srun",
            ["-n", "2", "--mpi=pmi2", ...pmiRanks(site.bin, image, more)],
            { OMPI_T: "o", MPICH_T: "m", UCX_T: "u", FI_T: "f" },
          );
          assertPmi(r, " step 0 o m u f");
        },
      );

      await t.step("hydra's mpiexec: each rank's PMI socket moves to fd 3", async () => {
        const r = await slurm.run(user, "mpiexec", ["-n", "2", ...pmiRanks(site.bin, image)]);
        assertPmi(r);
      });

      await t.step(
        "--mpi=pmix: PMIX_SERVER_TMPDIR is there inside, with the server's files",
        async () => {
          const list = 'echo "$0 $PMIX_RANK $(ls "$PMIX_SERVER_TMPDIR" | sort | tr "\\n" " ")"';
          const r = await slurm.run(user, "srun", [
            "-n",
            "2",
            "--mpi=pmix",
            ...wrapped(list.replace("$0", "outer"), site.bin, image, list.replace("$0", "inner")),
          ]);
          assertEquals(r.code, 0, r.stderr);
          const lines = sorted(r.stdout);
          assertEquals(lines.length, 4, r.stdout);
          for (const rank of [0, 1]) {
            const outer = lines.find((l) => l.startsWith(`outer ${rank} `))!;
            assert(outer.includes("pmix_dstor"), outer);
            assertEquals(
              lines.find((l) => l.startsWith(`inner ${rank} `)),
              outer.replace("outer", "inner"),
            );
          }
        },
      );

      await t.step("--cpu-bind: each rank keeps its CPUs inside", async () => {
        const last = navigator.hardwareConcurrency - 1;
        const r = await slurm.run(user, "srun", [
          "-n",
          "2",
          `--cpu-bind=map_cpu:${last},0`,
          "--label",
          site.bin,
          "run",
          image,
          "grep",
          "Cpus_allowed_list",
          "/proc/self/status",
        ]);
        assertEquals(sorted(r.stdout), [
          `0: Cpus_allowed_list:\t${last}`,
          "1: Cpus_allowed_list:\t0",
        ], r.stderr);
      });

      await t.step("--mem-bind: each rank keeps its memory policy inside", async () => {
        // Slurm's task/affinity sets the rank's NUMA policy (set_mempolicy), which numa_maps
        // shows for every mapping; one node here, so the policy binds to node 0.
        const policy = async (bind: string[]) => {
          const r = await slurm.run(user, "srun", [
            ...["-n", "1", ...bind, site.bin, "run", image],
            ...["head", "-n", "1", "/proc/self/numa_maps"],
          ]);
          assertEquals(r.code, 0, r.stderr);
          return r.stdout.trim().split(/\s+/)[1];
        };
        assertEquals(await policy(["--mem-bind=map_mem:0"]), "bind:0");
        assertEquals(await policy([]), "default", "without --mem-bind, Slurm sets no policy");
      });

      await t.step("sbatch: a batch script's srun runs shoal", async () => {
        const out = `${user.home}/sbatch-${crypto.randomUUID().slice(0, 8)}.out`;
        try {
          const r = await slurm.run(user, "sbatch", [
            "--wait",
            "--quiet",
            "-n",
            "2",
            `--output=${out}`,
            `--wrap=srun ${site.bin} run ${image} sh -c 'echo rank $PMI_RANK of $PMI_SIZE fd $PMI_FD'`,
          ]);
          assertEquals(r.code, 0, r.stderr);
          assertEquals(sorted(await Deno.readTextFile(out)), [
            "rank 0 of 2 fd 3",
            "rank 1 of 2 fd 3",
          ]);
        } finally {
          await Deno.remove(out).catch(() => {});
        }
      });

      await t.step(
        "scancel: the step ends, nothing of it stays, its run dir is removed",
        async () => {
          await scancelLeavesNothing(slurm, user, site.bin, image);
        },
      );
    } finally {
      const { stopMs } = await slurm.stop();
      console.log(
        `slurm: started in ${slurm.startMs.toFixed(0)} ms, stopped in ${stopMs.toFixed(0)} ms`,
      );
    }
  });
}

async function scancelLeavesNothing(slurm: TestSlurm, user: TestUser, bin: string, image: string) {
  const name = `cancelled-${crypto.randomUUID().slice(0, 8)}`;
  // srun takes options after the program for its own (--name among them): sh passes them on.
  const [cmd, ...args] = slurm.argv(user, "srun", [
    "-n",
    "1",
    `--job-name=${name}`,
    "sh",
    "-c",
    'exec "$0" run --name "$1" "$2" sh -c "sleep 60"',
    bin,
    name,
    image,
  ]);
  const srun = new Deno.Command(cmd!, { args, cwd: user.home, stdout: "null", stderr: "piped" })
    .spawn();
  const stderr = new Response(srun.stderr).text();
  const base = openRunBase({ uid: user.uid }, false)?.path ?? `/tmp/shoal-${user.uid}`;
  const bundle = `${base}/${name}`;
  try {
    // srun buffers the tasks' output: the run's directory says it runs.
    assert(await eventually(() => exists(bundle), 15_000), `the run has its directory ${bundle}`);
    const cancel = await slurm.run(user, "scancel", [`--name=${name}`]);
    assertEquals(cancel.code, 0, cancel.stderr);
    const gone = await eventually(
      async () => slurm.jobProcesses().length === 0 && !(await exists(bundle)),
      15_000,
    );
    assert(gone, `left: ${slurm.jobProcesses().join("; ") || `the run dir ${bundle}`}`);
  } finally {
    await cancelJob(slurm, user, name, srun);
    await stderr;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Rank $SLURM_PROCID of $SLURM_NTASKS: says its pid in the container's /tmp,
 * lists the next rank's descriptors and reads its environment (both need one
 * user namespace), says its namespaces, and waits until every rank has looked.
 */
const STEP_RANK = "r=$SLURM_PROCID; n=$SLURM_NTASKS; o=$(((r + 1) % n)); echo $$ > /tmp/rank$r; " +
  "i=0; while [ ! -s /tmp/rank$o ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done; " +
  "p=$(cat /tmp/rank$o); ls /proc/$p/fd >/dev/null && e=$(tr '\\0' '\\n' < /proc/$p/environ | " +
  "grep ^SLURM_PROCID=); touch /tmp/done$r; " +
  'echo "$r $e $(readlink /proc/self/ns/user) $(readlink /proc/self/ns/mnt)"; ' +
  "i=0; while [ $(ls /tmp | grep -c done) -lt $n ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done";

for (const helper of [true, false]) {
  const tag = helper ? "path A (helper)" : "path B (squashfuse)";
  Deno.test(`${tag}: the ranks of a step on a node share one container`, async (t) => {
    const site = await runSite(helper);
    const image = await site.image("user");
    const user = (await site.user("user"))!;
    const slurm = await startSlurm();
    try {
      for (const n of [2, 4]) {
        await t.step(`srun -n ${n}: one container, each rank sees the next one's fds`, async () => {
          const r = await slurm.run(user, "srun", [
            "-n",
            String(n),
            // More tasks than this machine's CPUs.
            "--overcommit",
            "--mpi=pmi2",
            site.bin,
            "run",
            image,
            "sh",
            "-c",
            STEP_RANK,
          ]);
          assertEquals(r.code, 0, r.stderr);
          const lines = sorted(r.stdout);
          assertEquals(lines.length, n, r.stdout + r.stderr);
          const namespaces = new Set(lines.map((l) => l.split(" ").slice(2).join(" ")));
          assertEquals(namespaces.size, 1, r.stdout);
          for (const [rank, line] of lines.entries()) {
            assert(line.startsWith(`${rank} SLURM_PROCID=${(rank + 1) % n} user:[`), line);
          }
        });
      }

      await t.step("the step's /dev/shm is its ranks' own, and goes with the step", async () => {
        const tag = `shoal-shm-${crypto.randomUUID().slice(0, 8)}`;
        const r = await slurm.run(user, "srun", [
          "-n",
          "2",
          site.bin,
          "run",
          image,
          "sh",
          "-c",
          `touch /dev/shm/${tag}-$SLURM_PROCID; i=0; ` +
          `while [ $(ls /dev/shm | grep -c ${tag}) -lt 2 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; ` +
          `ls /dev/shm | grep -c ${tag}`,
        ]);
        assertEquals([r.code, sorted(r.stdout)], [0, ["2", "2"]], r.stderr);
        const left = [...Deno.readDirSync("/dev/shm")].filter((e) => e.name.startsWith(tag));
        assertEquals(left, [], "the step's files are in the host's /dev/shm");
      });

      await t.step("scancel of a shared step: nothing of it stays", async () => {
        const name = `cancelled-${crypto.randomUUID().slice(0, 8)}`;
        // A duration of its own: the host's process table is shared, other tests sleep too.
        const sleep = `60.${Math.floor(Math.random() * 1e6)}`;
        const [cmd, ...args] = slurm.argv(user, "srun", [
          "-n",
          "3",
          "--overcommit",
          `--job-name=${name}`,
          "sh",
          "-c",
          'exec "$0" run --name "$1" "$2" sleep "$3"',
          site.bin,
          name,
          image,
          sleep,
        ]);
        const srun = new Deno.Command(cmd!, {
          args,
          cwd: user.home,
          stdout: "null",
          stderr: "null",
        })
          .spawn();
        const base = openRunBase({ uid: user.uid }, false)?.path ?? `/tmp/shoal-${user.uid}`;
        const before = await joinFiles(base);
        try {
          assert(await eventually(() => exists(`${base}/${name}`), 15_000), "the step runs");
          assert((await joinFiles(base)).size > before.size, "the ranks share a container");
          // Every rank has joined: three sleeps in the step's container.
          assert(
            await eventually(async () => {
              const r = await site.shoal("user", ["exec", name, "sh", "-c", "ps -o args"]);
              return r.stdout.split("\n").filter((l) => l === `sleep ${sleep}`).length === 3;
            }, 15_000),
          );
          const cancel = await slurm.run(user, "scancel", [`--name=${name}`]);
          assertEquals(cancel.code, 0, cancel.stderr);
          const gone = await eventually(
            async () =>
              slurm.jobProcesses().length === 0 && !(await exists(`${base}/${name}`)) &&
              [...await joinFiles(base)].every((f) => before.has(f)),
            15_000,
          );
          assert(
            gone,
            `left: ${slurm.jobProcesses().join("; ")} ${
              [...await joinFiles(base)].filter((f) => !before.has(f)).join(" ")
            } ${(await exists(`${base}/${name}`)) ? name : ""}`,
          );
        } finally {
          await cancelJob(slurm, user, name, srun);
        }
      });
    } finally {
      await slurm.stop();
    }
  });
}

/** The step files in the run dir's join dir. */
async function joinFiles(base: string): Promise<Set<string>> {
  const names = new Set<string>();
  try {
    for await (const e of Deno.readDir(`${base}/${JOIN_DIR}`)) names.add(e.name);
  } catch { /* no join dir yet */ }
  return names;
}
