/**
 * `srun -n 2 --mpi=pmi2 shoal run --mpi` under a real Slurm
 * (tests/support/slurm.ts), as an unprivileged user, on both run paths:
 * both ranks run hello on the injected host MPI and see each other.
 *
 * Each rank has its own container today (two sibling user namespaces), so
 * MPICH 4's UCX needs `UCX_POSIX_USE_PROC_LINK=n` (it cannot open the peer's
 * /proc/PID/fd) and `UCX_TLS=^cma` (process_vm_readv is refused between
 * the namespaces); without them MPI_Init fails ("initial_address_exchange
 * ... Shared memory error"), with the injected MPI as with the image's own.
 * Once the ranks of a step share one container (issue 12, item 2) these
 * variables go. MPICH 3 (ch3:nemesis) needs none: its shared memory is files
 * in /dev/shm, which the containers share.
 */
import { assertEquals, assertMatch } from "./support/assert.ts";
import { runSite } from "./support/run.ts";
import { startSlurm } from "./support/slurm.ts";
import { mpiSite } from "./support/mpi_images.ts";

const sorted = (text: string) => text.trim().split("\n").map((l) => l.trimEnd()).sort();
const UCX_APART = { UCX_TLS: "^cma", UCX_POSIX_USE_PROC_LINK: "n" };

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
      const r = await srun(["--mpi", images.mpich4], UCX_APART);
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
        [["--mpi", images.mpich4, "pingpong"], UCX_APART],
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
