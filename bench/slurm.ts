/**
 * What shoal adds to a Slurm step: `srun -n 2 shoal run IMAGE true` against
 * `srun -n 2 true` (the floor: Slurm's own cost of a 2-task step), on the
 * helper path and the unprivileged path, under a private Slurm
 * (tests/support/slurm.ts) in a network namespace of its own, as the
 * unprivileged test user. Rounds run the floor and each path in turn, so
 * that a VM whose speed drifts moves them alike. Medians of RUNS rounds.
 * Run as root.
 *
 *   .tools/bin/deno run -A bench/slurm.ts [RUNS]
 */
import { startSlurm } from "../tests/support/slurm.ts";
import { runSite } from "./lib/run_site.ts";
import { median } from "./lib/stats.ts";

const runs = Number(Deno.args[0] ?? 9);
const tasks = Number(Deno.args[1] ?? 2);
await using site = await runSite("shoal-bench-slurm");
await using slurm = await startSlurm();

async function timed(args: string[]): Promise<number> {
  const started = performance.now();
  const r = await slurm.run(site.user, "srun", ["-n", String(tasks), ...args], site.env);
  const ms = performance.now() - started;
  if (r.code !== 0) throw new Error(`srun ${args.join(" ")}: ${r.stderr.trim()}`);
  return ms;
}

const cases: Record<string, { path?: "helper" | "unprivileged"; args: string[] }> = {
  [`srun -n ${tasks} true`]: { args: ["true"] },
  [`srun -n ${tasks} shoal run (helper path)`]: {
    path: "helper",
    args: [site.bin, "run", site.image, "true"],
  },
  [`srun -n ${tasks} shoal run (unprivileged path)`]: {
    path: "unprivileged",
    args: [site.bin, "run", site.image, "true"],
  },
};
const times: Record<string, number[]> = Object.fromEntries(Object.keys(cases).map((k) => [k, []]));
// One warm-up round: Slurm's first step and each path's first start pay one-time costs.
for (let round = -1; round < runs; round++) {
  for (const [name, c] of Object.entries(cases)) {
    if (c.path !== undefined) await site.usePath(c.path);
    const ms = await timed(c.args);
    if (round >= 0) times[name]!.push(ms);
  }
}
const floor = median(Object.values(times)[0]!);
console.log(`Slurm step overhead, ${runs} rounds, medians (${tasks} tasks on one node)`);
for (const [name, list] of Object.entries(times)) {
  const m = median(list);
  console.log(
    `${name.padEnd(44)} ${m.toFixed(0).padStart(6)} ms  ${(m / floor).toFixed(2)}x  +${
      (m - floor).toFixed(0)
    } ms`,
  );
}
