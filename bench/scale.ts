/**
 * 64 concurrent `shoal run IMAGE true` by one user (helper path), side by side
 * with 64 concurrent bare `runc run` of a prepared bundle: total wall time and
 * the median per container. Nothing in shoal may serialize starts on a
 * global lock, so the ratio should stay near the single-start ratio. Run as
 * root (it sets up a site install and runs everything as the test user).
 *
 *   .tools/bin/deno run -A bench/scale.ts [CONTAINERS]
 */
import { RUNC, runcArgs, runSite } from "./lib/run_site.ts";
import { type Wave, wave } from "./lib/wave.ts";

const count = Number(Deno.args[0] ?? 64);
await using site = await runSite();
await site.usePath("helper");

const runc = await wave(site, count, (i) => [RUNC, runcArgs(site, `scale-${Deno.pid}-${i}`)]);
const shoal = await wave(site, count, () => [site.bin, ["run", "--root", site.image, "true"]]);
const line = (name: string, w: Wave) =>
  console.log(
    `  ${name.padEnd(26)} total ${(w.wall / 1000).toFixed(2).padStart(6)} s   ` +
      `per container ${w.each.toFixed(0).padStart(5)} ms`,
  );
console.log(`${count} concurrent containers running 'true', one user`);
line("runc run (floor)", runc);
line("shoal run --root (helper)", shoal);
console.log(
  `  ratio: total ${(shoal.wall / runc.wall).toFixed(2)}x, per container ${
    (shoal.each / runc.each).toFixed(2)
  }x`,
);
