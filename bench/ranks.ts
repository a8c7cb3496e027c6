/**
 * 64 ranks of one step on one node: 64 concurrent `shoal run --join KEY
 * IMAGE true` (one container, every rank enters it through shoal-enter; what
 * `srun -n 64 shoal run` does, join.ts) against 64 concurrent bare `runc run`
 * of the same image's bundle (64 containers), and against 64 concurrent plain
 * `shoal run` (64 containers), and 64 `shoal version` (what a shoal process
 * costs before it runs anything), on both run paths: total wall time from the
 * start to the last rank's end, and the median per rank, medians of ROUNDS
 * rounds. Run as root (it sets up a site install and runs everything as the
 * test user).
 *
 *   .tools/bin/deno run -A bench/ranks.ts [RANKS] [ROUNDS]
 */
import { RUNC, runcArgs, runSite } from "./lib/run_site.ts";
import { median } from "./lib/stats.ts";
import { type Wave, wave } from "./lib/wave.ts";

const count = Number(Deno.args[0] ?? 64);
const rounds = Number(Deno.args[1] ?? 3);
await using site = await runSite("shoal-bench-ranks");

/** Medians over the rounds of `start`'s waves. */
async function medianWave(start: (round: number, i: number) => [string, string[]]): Promise<Wave> {
  const waves: Wave[] = [];
  for (let round = 0; round < rounds; round++) {
    waves.push(await wave(site, count, (i) => start(round, i)));
  }
  return { wall: median(waves.map((w) => w.wall)), each: median(waves.map((w) => w.each)) };
}

const line = (name: string, w: Wave, floor: Wave) =>
  console.log(
    `  ${name.padEnd(34)} total ${(w.wall / 1000).toFixed(2).padStart(6)} s ` +
      `(${(w.wall / floor.wall).toFixed(2)}x)   per rank ${w.each.toFixed(0).padStart(5)} ms`,
  );

console.log(`${count} ranks of one step on one node running 'true', medians of ${rounds} rounds`);
for (const path of ["helper", "unprivileged"] as const) {
  await site.usePath(path);
  // The first start after the config changed validates it; a site's ranks find it validated.
  await site.run(site.bin, ["run", "--root", site.image, "true"]);
  const runc = await medianWave((round, i) => [RUNC, runcArgs(site, `ranks-${round}-${i}`)]);
  const key = `ranks-${Deno.pid}-${path}`;
  const joined = await medianWave((round) => [
    site.bin,
    ["run", "--root", "--join", `${key}-${round}`, site.image, "true"],
  ]);
  // Generated names, as users get them: a wave frees and takes them again (rundir.ts).
  const alone = await medianWave(() => [site.bin, ["run", "--root", site.image, "true"]]);
  // What every rank's shoal costs before it does anything: Deno's start and the CLI.
  const started = await medianWave(() => [site.bin, ["version"]]);
  console.log(`path: ${path}`);
  line("runc run x64 (floor)", runc, runc);
  line("shoal run --join (one container)", joined, runc);
  line("shoal run (64 containers)", alone, runc);
  line("shoal version x64 (start-up alone)", started, runc);
}
