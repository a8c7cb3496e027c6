/**
 * `srun -n 2 --mpi=pmi2 shoal run --mpi` under a real Slurm
 * (tests/support/slurm.ts), as an unprivileged user, on both run paths:
 * both ranks run hello on the injected host MPI and see each other.
 *
 * The ranks of the step share one container (mod/runtime/join.ts), so
 * MPICH 4 over UCX needs no transport settings: with a container each,
 * UCX could not open the peer's /proc/PID/fd nor use cross-memory attach,
 * and MPI_Init failed ("initial_address_exchange ... Shared memory error").
 */
import { assertEquals, assertMatch } from "./support/assert.ts";
import { runSite } from "./support/run.ts";
import { startSlurm } from "./support/slurm.ts";
import { mpiSite } from "./support/mpi_images.ts";

const sorted = (text: string) => text.trim().split("\n").map((l) => l.trimEnd()).sort();

for (const helper of [true, false]) {
  const tag = helper ? "path A (helper)" : "path B (squashfuse)";
  Deno.test(`${tag}: srun --mpi=pmi2 shoal run --mpi, as a user`, async (t) => {
    const site = await runSite(helper);
    const user = (await site.user("user"))!;
    const images = await mpiSite(site);
    await using slurm = await startSlurm();
    const srun = (args: string[], env: Record<string, string> = {}) =>
      slurm.run(user, "srun", ["-n", "2", "--mpi=pmi2", site.bin, "run", ...args], env);

    await t.step("the host's MPICH 4 injected, 2 ranks", async () => {
      const r = await srun(["--mpi", images.mpich4]);
      assertEquals(r.code, 0, r.stderr);
      assertEquals(
        sorted(r.stdout),
        [0, 1].map((rank) =>
          `hello rank ${rank} of 2; MPICH Version:\t4.0.2; /opt/shoal/mpi/lib/libmpich.so.12`
        ),
      );
    });

    await t.step("MPICH 3.4.1 (ch3) injected into the bookworm image, 2 ranks", async () => {
      const r = await srun(["--mpi-type", "mpich3", images.mpich4]);
      assertEquals(r.code, 0, r.stderr);
      assertEquals(
        sorted(r.stdout),
        [0, 1].map((rank) =>
          `hello rank ${rank} of 2; MPICH Version:\t3.4.1; /opt/shoal/mpi/lib/libmpich.so.12`
        ),
      );
    });

    await t.step("ping-pong of 8 B to 4 MB between the ranks on the injected MPIs", async () => {
      const runs: [string[], Record<string, string>][] = [
        [["--mpi", images.mpich4, "pingpong"], {}],
        [["--mpi-type", "mpich3", images.mpich4, "pingpong"], {}],
      ];
      for (const [args, env] of runs) {
        const r = await srun(args, env);
        assertEquals(r.code, 0, r.stderr);
        assertMatch(
          r.stdout,
          /^latency 8 B: [\d.]+ us\nbandwidth 1048576 B: [\d.]+ GB\/s\nbandwidth 4194304 B: [\d.]+ GB\/s\n$/,
        );
      }
    });
  });
}
