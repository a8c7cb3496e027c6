/**
 * Pull + convert of the Debian bookworm minbase image from a loopback
 * registry, side by side with the pipeline Sarus uses (skopeo copy + umoci
 * unpack + mksquashfs). Prints the medians of several runs and each stage's
 * share. Needs root the first time on a machine (the image is debootstrap'd
 * once and cached, see tests/support/debian.ts).
 *
 *   deno task bench            (or: .tools/bin/deno run -A bench/pull.ts [RUNS])
 */
import { debianImage } from "../tests/support/debian.ts";
import { pushImage } from "../tests/support/oci.ts";
import { startRegistry } from "../tests/support/registry.ts";
import { timeSarusPipeline } from "./lib/sarus_pipeline.ts";

const runs = Number(Deno.args[0] ?? 5);
const ref = "debian:bookworm";

const image = await debianImage();
const layerBytes = image.layers.reduce((sum, l) => sum + l.size, 0);
await using registry = await startRegistry("plain");
await pushImage(registry, "debian", "bookworm", image);

const sarus = await timeSarusPipeline(registry, ref, runs);
const seconds = (ms: number) => `${(ms / 1000).toFixed(2).padStart(6)} s`;
const share = (ms: number) => `${(100 * ms / sarus.total).toFixed(0).padStart(3)}%`;
console.log(
  `pull ${registry.host}/${ref} (${(layerBytes / 1e6).toFixed(1)} MB compressed), ` +
    `median of ${runs} runs`,
);
console.log(`  sarus pipeline (squashfs ${(sarus.squashfsBytes / 1e6).toFixed(1)} MB)`);
console.log(`    skopeo copy            ${seconds(sarus.copy)} ${share(sarus.copy)}`);
console.log(`    umoci unpack --rootless${seconds(sarus.unpack)} ${share(sarus.unpack)}`);
console.log(`    mksquashfs             ${seconds(sarus.squash)} ${share(sarus.squash)}`);
console.log(`    total                  ${seconds(sarus.total)}`);
