/**
 * Start-up cost of the shoal command line, side by side with its floor: the
 * same Deno starting an empty program. Thousands of ranks each start shoal, so
 * this overhead multiplies. Prints medians of several runs and their ratio.
 * Run as root (it installs shoal into a temporary root-owned prefix).
 *
 *   deno task bench            (or: .tools/bin/deno run -A bench/cli-startup.ts [RUNS])
 */
import { shoalScript } from "../tests/support/shoal.ts";
import { installedShoal } from "../tests/support/install.ts";

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

// As users run it: the launcher of an installation (install.sh), which runs
// the code-split bundle with the flags that matter for start-up.
const { bin } = await installedShoal();
const floor = await median(deno, ["eval", "--no-config", ""]);
const installed = await median(bin, ["version"]);
const checkout = await median(shoalScript, ["version"]);
const row = (name: string, ms: number) =>
  console.log(
    `  ${name.padEnd(34)} ${ms.toFixed(1).padStart(6)} ms   ${(ms / floor).toFixed(2)}x`,
  );
console.log(`shoal start-up, median of ${runs} runs, ratio to the floor`);
row("deno eval '' (floor)", floor);
row("shoal version, installed (bundle)", installed);
row("shoal version, from the checkout", checkout);
