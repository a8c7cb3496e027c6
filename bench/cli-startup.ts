/**
 * Start-up cost of the shoal command line, side by side with its floor: the
 * same Deno starting an empty program. Thousands of ranks each start shoal, so
 * this overhead multiplies. Prints medians of several runs and their ratio.
 *
 *   deno task bench            (or: .tools/bin/deno run -A bench/cli-startup.ts [RUNS])
 */
import { repoRoot, shoalScript } from "../tests/support/shoal.ts";

const runs = Number(Deno.args[0] ?? 15);
const deno = Deno.execPath();

async function timeOnce(cmd: string, args: string[]): Promise<number> {
  const start = performance.now();
  const out = await new Deno.Command(cmd, { args, stdout: "null", stderr: "null" }).output();
  if (!out.success) throw new Error(`${cmd} ${args.join(" ")} failed with ${out.code}`);
  return performance.now() - start;
}

async function median(cmd: string, args: string[]): Promise<number> {
  await timeOnce(cmd, args); // warm the page cache and Deno's code cache
  const times: number[] = [];
  for (let i = 0; i < runs; i++) times.push(await timeOnce(cmd, args));
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)] ?? NaN;
}

const floor = await median(deno, ["eval", "--no-config", ""]);
const version = await median(shoalScript, ["version"]);
console.log(`startup, median of ${runs} runs (checkout ${repoRoot})`);
console.log(`  deno eval '' (floor)   ${floor.toFixed(1)} ms`);
console.log(
  `  shoal version          ${version.toFixed(1)} ms   ratio ${(version / floor).toFixed(2)}x`,
);
