/**
 * `srun -N 2 ... shoal run` on a private Slurm of two nodes
 * (tests/support/slurm.ts: the second slurmd in a network and UTS namespace
 * of its own), as an unprivileged user, on both run paths: one container per
 * node, each with its node's hostname, the PMI-1 exchange completes across
 * the nodes, and nothing is left on either node.
 */
import { assert, assertEquals, assertNotEquals } from "./support/assert.ts";
import { eventually, runSite } from "./support/run.ts";
import { pmiExchange, startSlurm, wrapped } from "./support/slurm.ts";

/** What a rank prints about where it runs: its node, rank, hostname and mount namespace. */
const WHERE = "node $SLURM_NODEID proc $SLURM_PROCID host $(cat /proc/sys/kernel/hostname) " +
  "mnt $(readlink /proc/self/ns/mnt)";

/** `outer`/`rank` lines, keyed by SLURM_PROCID: "node N proc P host H mnt M" parsed. */
function places(stdout: string, prefix: "outer" | "rank") {
  const found = new Map<string, { node: string; host: string; mnt: string; line: string }>();
  for (const line of stdout.trim().split("\n")) {
    if (!line.startsWith(`${prefix} `)) continue;
    const m = line.match(/ node (\S+) proc (\S+) host (\S+) mnt (\S+)$/);
    assert(m !== null, line);
    found.set(m[2]!, { node: m[1]!, host: m[3]!, mnt: m[4]!, line });
  }
  return found;
}

for (const helper of [true, false]) {
  const tag = helper ? "path A (helper)" : "path B (squashfuse)";
  Deno.test(`${tag}: srun -N 2 shoal run on two Slurm nodes, as a user`, async () => {
    const site = await runSite(helper);
    const image = await site.image("user");
    const user = (await site.user("user"))!;
    await using slurm = await startSlurm({ nodes: 2 });
    assertEquals(slurm.nodes.length, 2);

    // --immediate: a node that is not there fails the step instead of leaving it pending.
    const r = await slurm.run(user, "srun", [
      "--immediate=10",
      "-N",
      "2",
      "-n",
      "2",
      "--mpi=pmi2",
      ...wrapped(`echo "outer ${WHERE}"`, site.bin, image, pmiExchange(` ${WHERE}`)),
    ]);
    assertEquals(r.code, 0, r.stderr);
    const outer = places(r.stdout, "outer");
    const inner = places(r.stdout, "rank");
    assertEquals([...inner.keys()].sort(), ["0", "1"], r.stdout);
    for (const proc of ["0", "1"]) {
      const rank = inner.get(proc)!;
      const task = outer.get(proc)!;
      assert(
        rank.line.startsWith(
          `rank ${proc} of 2 fd 3 socket:[`,
        ) && rank.line.includes("] cmd=response_to_init cmd=barrier_out cmd=finalize_ack "),
        rank.line,
      );
      // Rank N on node N (block distribution), with that node's hostname inside.
      assertEquals(rank.node, proc);
      assertEquals(rank.host, slurm.nodes[Number(proc)]);
      assertEquals(task.host, rank.host);
      assertNotEquals(rank.mnt, task.mnt, "the rank runs in a container");
    }
    assertNotEquals(inner.get("0")!.mnt, inner.get("1")!.mnt, "one container per node");

    const clean = await eventually(
      () => Promise.resolve(slurm.jobProcesses().length === 0),
      15_000,
    );
    assert(clean, `left on the nodes: ${slurm.jobProcesses().join("; ")}`);
  });
}
