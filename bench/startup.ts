/**
 * Start-up of `shoal run --root IMAGE true` (warm: the image is pulled), on
 * the helper path and the unprivileged path, side by side in one run with the
 * floor: bare `runc run` of a prepared bundle of the same image, same user,
 * same id mappings (runc calls newuidmap too). Also `podman run --rm` and
 * `ch-run` on the same image where they work on this machine, and the peak
 * RSS of the shoal process. Medians of several runs. Run as root (it sets up
 * a site install and runs everything as the unprivileged test user).
 *
 * With CDI devices too: the same run with one device and with all devices of
 * a spec of realistic size (8 GPUs, each a device node and variables, and 60
 * driver libraries bind-mounted for all of them), against the same path
 * without devices (issue 13: within 10%), and `--gpus all`; and bare runc with
 * the same mounts, which runc itself pays for. The nodes are /dev/null's, the
 * libraries small files of the site's.
 *
 * And as a user runs on a site install by default, as themselves: their own
 * pulled image from the site's cluster store (helper path, issue 14: within
 * 2.0x of the floor), and from their own repository where the site has no
 * store (the unprivileged path).
 *
 *   .tools/bin/deno run -A bench/startup.ts [RUNS]
 */
import { runAs, testUser } from "../tests/support/users.ts";
import { busyboxImage, pushImage } from "../tests/support/oci.ts";
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

/**
 * Where one start's time goes, from `shoal --debug run`: its debug lines give
 * the runtime's start (epoch ms) and times counted from it. Before: from the
 * spawn to Deno running shoal's code (the user switch, the launcher, Deno's
 * own start); shoal: its modules, config, image, path and bundle, up to the
 * launch; container: the helper or the guard chain, runc, `true`, until runc
 * has exited and the watchdog or guard has cleaned up; after: shoal's exit.
 */
async function breakdown(args: string[]): Promise<Record<string, number>> {
  const spawned = Date.now();
  const r = await site.run(site.bin, ["--debug", ...args]);
  const ended = Date.now();
  if (r.code !== 0) throw new Error(`shoal --debug ${args.join(" ")}: ${r.stderr.trim()}`);
  const num = (re: RegExp) => {
    const m = re.exec(r.stderr);
    if (m === null) throw new Error(`no ${re} in shoal's debug output:\n${r.stderr}`);
    return Number(m[1]);
  };
  const origin = num(/runtime started at ([\d.]+) ms after the epoch/);
  const launch = num(/config\.json written \(at ([\d.]+) ms\)/);
  const exited = num(/container exited with status \d+ \(at ([\d.]+) ms\)/);
  return {
    before: origin - spawned,
    shoal: launch,
    container: exited - launch,
    after: ended - origin - exited,
  };
}

const paths = ["helper", "unprivileged"] as const;
const shoalArgs = ["run", "--root", site.image, "true"];
const floorCdiBundle = `${site.work}/bundle-cdi`;
const cdi = { cdiSpecDirs: [await benchCdiSpec(site.prefix)] };
const deviceCases = {
  "one CDI device": ["run", "--root", "--device", "nvidia.com/gpu=0", site.image, "true"],
  "all 8 CDI devices": ["run", "--root", "--device", "nvidia.com/gpu=all", site.image, "true"],
  "--gpus all (8 GPUs)": ["run", "--root", "--gpus", "all", site.image, "true"],
};

/** A root-owned CDI spec dir under the site's prefix, as the security checks want it. */
async function benchCdiSpec(prefix: string): Promise<string> {
  const libs = `${prefix}/lib/cdi-bench`;
  await Deno.mkdir(libs, { recursive: true, mode: 0o755 });
  const mounts = [];
  for (let i = 0; i < 60; i++) {
    await Deno.writeTextFile(`${libs}/libbench${i}.so.1`, "", { mode: 0o644 });
    mounts.push({
      hostPath: `${libs}/libbench${i}.so.1`,
      containerPath: `/usr/lib/libbench${i}.so.1`,
      options: ["ro", "nosuid", "nodev", "bind"],
    });
  }
  const devices = Array.from({ length: 8 }, (_, i) => ({
    name: String(i),
    containerEdits: {
      env: [`BENCH_GPU${i}=${i}`],
      deviceNodes: [{ path: `/dev/benchgpu${i}`, hostPath: "/dev/null" }],
    },
  }));
  const dir = `${prefix}/etc/cdi-bench`;
  await Deno.mkdir(dir, { recursive: true, mode: 0o755 });
  const spec = {
    cdiVersion: "0.6.0",
    // NVIDIA's kind, which `--gpus` takes.
    kind: "nvidia.com/gpu",
    devices,
    containerEdits: {
      env: ["BENCH_DRIVER=1"],
      deviceNodes: [{ path: "/dev/benchctl", hostPath: "/dev/null" }],
      mounts,
    },
  };
  await Deno.writeTextFile(`${dir}/bench.json`, JSON.stringify(spec), { mode: 0o644 });
  await floorWithDevices(mounts, devices.map((d) => d.containerEdits.deviceNodes[0]!.path));
  return dir;
}

/**
 * The floor's bundle with what all 8 devices add (the 60 libraries and the
 * nodes, bound as rootless runc binds them), for bare runc: what runc itself
 * pays for the devices' mounts, apart from shoal.
 */
async function floorWithDevices(
  libraries: { hostPath: string; containerPath: string; options: string[] }[],
  nodes: string[],
): Promise<void> {
  const config = JSON.parse(await Deno.readTextFile(`${site.bundle}/config.json`));
  config.root.path = `${site.bundle}/rootfs`;
  const bind = (source: string, destination: string, options: string[]) => ({
    destination,
    type: "bind",
    source,
    options: ["rbind", ...options.filter((o) => o !== "bind")],
  });
  config.mounts.push(
    ...libraries.map((l) => bind(l.hostPath, l.containerPath, l.options)),
    ...["/dev/benchctl", ...nodes].map((n) => bind("/dev/null", n, ["nosuid", "noexec"])),
  );
  await Deno.mkdir(floorCdiBundle, { recursive: true });
  await Deno.writeTextFile(`${floorCdiBundle}/config.json`, JSON.stringify(config));
  await Deno.chown(floorCdiBundle, site.user.uid, site.user.gid);
}
// The site's cluster store, owned by an account of its own, with the user's image published in it.
const storeOwner = await testUser("shoal-store-t", false);
const store = `${site.prefix}/store`;
await Deno.mkdir(store, { mode: 0o755 });
await Deno.chown(store, storeOwner.uid, storeOwner.gid);
const storeConfig = { store: { path: store, owner: storeOwner.name } };
await pushImage(site.registry, "bench/busybox-store", "latest", busyboxImage());
const storeImage = `${site.registry.host}/bench/busybox-store:latest`;
await site.usePath("helper", storeConfig);
const published = await site.run(site.bin, ["pull", "-q", storeImage]);
if (published.code !== 0) throw new Error(`publish: ${published.stderr}`);
const asUser: Record<
  string,
  { path: "helper" | "unprivileged"; extra: Record<string, unknown>; args: string[] }
> = {
  "your image from the cluster store (helper path)": {
    path: "helper",
    extra: storeConfig,
    args: ["run", storeImage, "true"],
  },
  "your image, no store (unprivileged path)": {
    path: "unprivileged",
    extra: {},
    args: ["run", site.image, "true"],
  },
};
const asUserTimes: Record<string, number[]> = {};
for (const c of Object.values(asUser)) {
  await site.usePath(c.path, c.extra);
  await timed(site.bin, c.args); // warm
}

let n = 0;
const floorRun = () => timed(RUNC, runcArgs(site, `bench-${Deno.pid}-${n++}`));
const floorCdiRun = () =>
  timed(RUNC, ["--root", `${site.work}/runc`, "run", "--bundle", floorCdiBundle, `cdi-${n++}`]);

/**
 * Switches the site config, then starts once untimed: the first start after
 * the config's text changed validates it (and keeps the result), which a
 * site whose config stays as it is never pays on a run.
 */
async function useConfig(
  path: "helper" | "unprivileged",
  extra: Record<string, unknown>,
  args: string[],
): Promise<void> {
  await site.usePath(path, extra);
  await site.run(site.bin, args);
}

// Rounds take one of each in turn, so that a machine that slows down or speeds up
// during the benchmark (a VM) shifts the floor and shoal alike.
const times: Record<string, number[]> = {
  floor: [],
  floorCdi: [],
  version: [],
  helper: [],
  unprivileged: [],
};
const deviceTimes: Record<string, number[]> = {};
const parts: Record<string, Record<string, number>[]> = { helper: [], unprivileged: [] };
const usable: Record<string, string | undefined> = {};
for (const path of paths) {
  await site.usePath(path, cdi);
  const probe = await site.run(site.bin, shoalArgs);
  usable[path] = probe.code === 0 ? undefined : probe.stderr.trim();
  if (usable[path] === undefined) await timed(site.bin, shoalArgs); // warm Deno's code cache
  for (const args of Object.values(deviceCases)) {
    if (usable[path] === undefined) await timed(site.bin, args); // and the CDI module's
  }
}
await floorRun();
await floorCdiRun();
for (let round = 0; round < runs; round++) {
  times.floor!.push(await floorRun());
  times.floorCdi!.push(await floorCdiRun());
  times.version!.push(await timed(site.bin, ["version"]));
  for (const [name, c] of Object.entries(asUser)) {
    await useConfig(c.path, c.extra, c.args);
    (asUserTimes[name] ??= []).push(await timed(site.bin, c.args));
  }
  for (const path of paths) {
    if (usable[path] !== undefined) continue;
    await useConfig(path, cdi, shoalArgs);
    times[path]!.push(await timed(site.bin, shoalArgs));
    parts[path]!.push(await breakdown(shoalArgs));
    for (const [name, args] of Object.entries(deviceCases)) {
      (deviceTimes[`${path}: ${name}`] ??= []).push(await timed(site.bin, args));
    }
  }
}

const floor = median(times.floor!);
const row = (name: string, ms: number) =>
  console.log(`  ${name.padEnd(40)} ${ms.toFixed(1).padStart(7)} ms   ${(ms / floor).toFixed(2)}x`);
console.log(`start-up of a container running 'true', median of ${runs} runs, ratio to the floor`);
row("runc run, prepared bundle (floor)", floor);
const floorCdi = median(times.floorCdi!);
row("  the same with all 8 devices' mounts", floorCdi);
for (const path of paths) {
  if (usable[path] !== undefined) {
    console.log(`  shoal run --root (${path} path): did not run: ${usable[path]}`);
    continue;
  }
  row(`shoal run --root (${path} path)`, median(times[path]!));
  const part = (key: string) => median(parts[path]!.map((p) => p[key]!)).toFixed(1);
  console.log(
    `    where it goes: before shoal's code ${part("before")} ms, shoal ${part("shoal")} ms, ` +
      `container ${part("container")} ms, after ${part("after")} ms`,
  );
  const plain = median(times[path]!);
  for (const name of Object.keys(deviceCases)) {
    const ms = median(deviceTimes[`${path}: ${name}`]!);
    console.log(
      `    with ${name.padEnd(26)} ${ms.toFixed(1).padStart(7)} ms   ` +
        `${(ms / plain).toFixed(2)}x the run without devices, ` +
        `${(ms / floorCdi).toFixed(2)}x runc with their mounts`,
    );
  }
  await site.usePath(path, cdi);
  console.log(`    peak RSS of shoal: ${((await peakRss(shoalArgs)) / 1e6).toFixed(1)} MB`);
}
row("  for comparison: shoal version", median(times.version!));
console.log("as yourself, on a site install with the helper:");
for (const [name, list] of Object.entries(asUserTimes)) row(`shoal run: ${name}`, median(list));

/** Peers run after shoal, each its own series (they share nothing with shoal's runs). */
async function medianOf(what: () => Promise<number>): Promise<number> {
  await what(); // warm caches
  const series: number[] = [];
  for (let i = 0; i < runs; i++) series.push(await what());
  return median(series);
}

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
