/**
 * Pull + convert of the Debian bookworm minbase image from a loopback
 * registry, side by side in one run with the pipeline Sarus uses (skopeo
 * copy + umoci unpack + mksquashfs), medians of several runs, each stage's
 * share; then a second image sharing the base layer, and shoal's peak memory
 * for the Debian image and for a generated 1 GB layer. Needs root the first
 * time on a machine (the image is debootstrap'd once and cached, see
 * tests/support/debian.ts).
 *
 *   deno task bench            (or: .tools/bin/deno run -A bench/pull.ts [RUNS])
 */
import { debianImage } from "../tests/support/debian.ts";
import { makeImage, makeLayer, pushImage } from "../tests/support/oci.ts";
import { startRegistry } from "../tests/support/registry.ts";
import { timeSarusPipeline } from "./lib/sarus_pipeline.ts";
import { shoalPull, type ShoalPullRun } from "./lib/shoal_pull.ts";
import { median } from "./lib/stats.ts";

const runs = Number(Deno.args[0] ?? 5);
const ref = "debian:bookworm";

const image = await debianImage();
const layerBytes = image.layers.reduce((sum, l) => sum + l.size, 0);
await using registry = await startRegistry("plain");
await pushImage(registry, "debian", "bookworm", image);
const app = makeImage([
  ...image.layers,
  makeLayer([{ type: "file", path: "opt/app", content: "x" }]),
], {
  cmd: ["bash"],
});
await pushImage(registry, "debian-app", "1", app);

const sarus = await timeSarusPipeline(registry, ref, runs);

const work = await Deno.makeTempDir({ prefix: "shoal-bench-pull-" });
const shoalRuns: ShoalPullRun[] = [];
const shared: ShoalPullRun[] = [];
try {
  for (let i = 0; i < runs; i++) {
    const home = `${work}/run${i}`;
    shoalRuns.push(await shoalPull(`${registry.host}/${ref}`, home));
    shared.push(await shoalPull(`${registry.host}/debian-app:1`, home));
    await Deno.remove(home, { recursive: true });
  }
} finally {
  await Deno.remove(work, { recursive: true });
}
const med = (f: (r: ShoalPullRun) => number, list = shoalRuns) => median(list.map(f));
const shoal = {
  total: med((r) => r.total),
  resolve: med((r) => r.resolve),
  download: med((r) => r.download),
  convert: med((r) => r.convert),
  rss: med((r) => r.peakRss),
  size: med((r) => r.squashfsBytes),
};

const seconds = (ms: number) => `${(ms / 1000).toFixed(2).padStart(6)} s`;
const share = (ms: number, total: number) => `${(100 * ms / total).toFixed(0).padStart(3)}%`;
const mb = (b: number) => `${(b / 1e6).toFixed(1)} MB`;
console.log(`pull ${registry.host}/${ref} (${mb(layerBytes)} compressed), median of ${runs} runs`);
console.log(`  sarus pipeline (squashfs ${mb(sarus.squashfsBytes)})`);
console.log(
  `    skopeo copy              ${seconds(sarus.copy)} ${share(sarus.copy, sarus.total)}`,
);
console.log(
  `    umoci unpack --rootless  ${seconds(sarus.unpack)} ${share(sarus.unpack, sarus.total)}`,
);
console.log(
  `    mksquashfs               ${seconds(sarus.squash)} ${share(sarus.squash, sarus.total)}`,
);
console.log(`    total                    ${seconds(sarus.total)}`);
console.log(`  shoal pull (squashfs ${mb(shoal.size)}, peak RSS ${mb(shoal.rss)})`);
const rest = shoal.total - shoal.resolve - shoal.download - shoal.convert;
console.log(
  `    resolve                  ${seconds(shoal.resolve)} ${share(shoal.resolve, shoal.total)}`,
);
console.log(
  `    download (verified)      ${seconds(shoal.download)} ${share(shoal.download, shoal.total)}`,
);
console.log(
  `    convert (flatten+sqfs)   ${seconds(shoal.convert)} ${share(shoal.convert, shoal.total)}`,
);
console.log(`    start-up and commit      ${seconds(rest)} ${share(rest, shoal.total)}`);
console.log(`    total                    ${seconds(shoal.total)}`);
console.log(`  shoal is ${(sarus.total / shoal.total).toFixed(1)}x faster end to end`);
console.log(
  `  second image sharing the base layer: ${seconds(med((r) => r.total, shared))}, ` +
    `downloaded ${mb(med((r) => r.downloadedBytes, shared))}`,
);

// Memory must not grow with the layer: one generated 1 GB layer of incompressible files.
if (!Deno.args.includes("--no-big-layer")) {
  const dir = await Deno.makeTempDir({ prefix: "shoal-bench-big-" });
  try {
    const files = 64;
    const chunk = new Uint8Array(16 * 2 ** 20);
    const entries = [];
    for (let i = 0; i < files; i++) {
      crypto.getRandomValues(chunk.subarray(0, 16384));
      // Repeat a random 16 KiB block: quick to make and compress, still 1 GB through the pipeline.
      for (let o = 16384; o < chunk.length; o += 16384) chunk.copyWithin(o, 0, 16384);
      entries.push({ type: "file" as const, path: `data/f${i}`, content: chunk.slice() });
    }
    const big = makeLayer(entries, { compression: "gzip" });
    await pushImage(registry, "big", "1", makeImage([big]));
    const run = await shoalPull(`${registry.host}/big:1`, `${dir}/home`);
    console.log(
      `  1 GB layer (${mb(big.size)} compressed): ${seconds(run.total)}, ` +
        `peak RSS of shoal ${mb(run.peakRss)}`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
