/**
 * Start-up of `shoal run --root IMAGE true` (warm: the image is pulled), on
 * the helper path and the unprivileged path, side by side in one run with the
 * floor: bare `runc run` of a prepared bundle of the same image, same user,
 * same id mappings (runc calls newuidmap too). Also `podman run --rm` and
 * `ch-run` on the same image where they work on this machine, and the peak
 * RSS of the shoal process. Medians of several runs. Run as root (it sets up
 * a site install and runs everything as the unprivileged test user).
 *
 *   .tools/bin/deno run -A bench/startup.ts [RUNS]
 */
import { runAs } from "../tests/support/users.ts";
import { spawnAs } from "../tests/support/helper.ts";
import { RUNC, runcArgs, runSite } from "./lib/run_site.ts";
import { median } from "./lib/stats.ts";

const runs = Number(Deno.args[0] ?? 15);
await using site = await runSite();

async function timed(cmd: string, args: string[]): Promise<number> {
  const started = performance.now();
  const r = await site.run(cmd, args);
  const ms = performance.now() - started;
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(" ")}: ${r.stderr.trim()}`);
  return ms;
}

async function medianOf(what: () => Promise<number>): Promise<number> {
  await what(); // warm caches
  const times: number[] = [];
  for (let i = 0; i < runs; i++) times.push(await what());
  return median(times);
}

/** Peak RSS of the shoal process itself (its pid survives the launcher's execs). */
async function peakRss(args: string[]): Promise<number> {
  const child = spawnAs(site.user, site.bin, args);
  let peak = 0;
  let done = false;
  const status = child.status.finally(() => done = true);
  while (!done) {
    const text = await Deno.readTextFile(`/proc/${child.pid}/status`).catch(() => "");
    peak = Math.max(peak, Number(/^VmHWM:\s+(\d+) kB/m.exec(text)?.[1] ?? 0) * 1024);
    await new Promise((r) => setTimeout(r, 5));
  }
  await status;
  await child.stdout.cancel().catch(() => {});
  await child.stderr.cancel().catch(() => {});
  return peak;
}

let n = 0;
const floor = await medianOf(() => timed(RUNC, runcArgs(site, `bench-${Deno.pid}-${n++}`)));
const row = (name: string, ms: number) =>
  console.log(`  ${name.padEnd(40)} ${ms.toFixed(1).padStart(7)} ms   ${(ms / floor).toFixed(2)}x`);
console.log(`start-up of a container running 'true', median of ${runs} runs, ratio to the floor`);
row("runc run, prepared bundle (floor)", floor);

const shoalArgs = ["run", "--root", site.image, "true"];
for (const path of ["helper", "unprivileged"] as const) {
  await site.usePath(path);
  const probe = await site.run(site.bin, shoalArgs);
  if (probe.code !== 0) {
    console.log(`  shoal run --root (${path} path): did not run: ${probe.stderr.trim()}`);
    continue;
  }
  row(`shoal run --root (${path} path)`, await medianOf(() => timed(site.bin, shoalArgs)));
  console.log(`    peak RSS of shoal: ${((await peakRss(shoalArgs)) / 1e6).toFixed(1)} MB`);
}
const version = await medianOf(() => timed(site.bin, ["version"]));
row("  of which Deno start + CLI (shoal version)", version);

// Peers, where they run here.
const tryPeer = async (
  name: string,
  prepare: () => Promise<string | undefined>,
  cmd: string,
  argsOf: () => string[],
) => {
  const problem = await prepare();
  const args = argsOf();
  const probe = problem === undefined ? await site.run(cmd, args) : undefined;
  if (problem !== undefined || probe?.code !== 0) {
    console.log(
      `  ${name}: did not run here: ${problem ?? probe?.stderr.trim().split("\n").at(-1)}`,
    );
    return;
  }
  row(name, await medianOf(() => timed(cmd, args)));
};
await tryPeer(
  "ch-run (charliecloud), same rootfs",
  () => Promise.resolve(undefined),
  "ch-run",
  () => [
    `${site.bundle}/rootfs`,
    "--",
    "/bin/true",
  ],
);
const archive = `${site.work}/image.tar`;
let podmanImage = "";
await tryPeer(
  "podman run --rm (rootless)",
  async () => {
    const copy = await runAs(site.user, "skopeo", [
      "copy",
      "--src-tls-verify=false",
      `docker://${site.image}`,
      `oci-archive:${archive}:bench/busybox:latest`,
    ]);
    if (copy.code !== 0) return `skopeo copy: ${copy.stderr.trim()}`;
    const load = await site.run("podman", ["load", "-i", archive]);
    if (load.code !== 0) return `podman load: ${load.stderr.trim().split("\n").at(-1)}`;
    podmanImage = /Loaded image(?:\(s\))?: (\S+)/.exec(load.stdout)?.[1] ?? "";
    return podmanImage ? undefined : `podman load said: ${load.stdout.trim()}`;
  },
  "podman",
  () => ["run", "--rm", "--network", "host", "--cgroup-manager", "cgroupfs", podmanImage, "true"],
);
