/**
 * The pipeline Sarus runs for `sarus pull`, stage by stage, as the baseline
 * shoal's pull is measured against: `skopeo copy` from the registry into an
 * OCI layout, `umoci unpack --rootless` into a bundle, `mksquashfs` of its
 * rootfs with mksquashfs's defaults.
 */
import { median } from "./stats.ts";

export interface SarusStages {
  /** Median milliseconds per stage and end to end, over the runs. */
  copy: number;
  unpack: number;
  squash: number;
  total: number;
  /** Size of the squashfs the last run produced. */
  squashfsBytes: number;
}

/** Where the image is: a loopback plain-HTTP registry (a TestRegistry fits). */
export interface PlainRegistry {
  host: string;
}

async function timed(cmd: string, args: string[]): Promise<number> {
  const started = performance.now();
  const out = await new Deno.Command(cmd, { args, stdin: "null", stdout: "null", stderr: "piped" })
    .output();
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
  return performance.now() - started;
}

interface RunTimes {
  copy: number;
  unpack: number;
  squash: number;
  bytes: number;
}

async function runOnce(registry: PlainRegistry, ref: string): Promise<RunTimes> {
  const tag = ref.includes(":") ? ref.slice(ref.lastIndexOf(":") + 1) : "latest";
  const dir = await Deno.makeTempDir({ prefix: "shoal-bench-sarus-" });
  try {
    const copy = await timed("skopeo", [
      "copy",
      "--src-tls-verify=false",
      `docker://${registry.host}/${ref}`,
      `oci:${dir}/oci:${tag}`,
    ]);
    const unpack = await timed("umoci", [
      "unpack",
      "--rootless",
      "--image",
      `${dir}/oci:${tag}`,
      `${dir}/bundle`,
    ]);
    const squash = await timed("mksquashfs", [`${dir}/bundle/rootfs`, `${dir}/image.sqfs`]);
    return { copy, unpack, squash, bytes: (await Deno.stat(`${dir}/image.sqfs`)).size };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * Runs the pipeline `runs` times on `ref` ("repository:tag") of `registry`,
 * each time from scratch, and returns the median of each stage.
 */
export async function timeSarusPipeline(
  registry: PlainRegistry,
  ref: string,
  runs: number,
): Promise<SarusStages> {
  const results: RunTimes[] = [];
  for (let i = 0; i < runs; i++) results.push(await runOnce(registry, ref));
  const at = (stage: "copy" | "unpack" | "squash") => median(results.map((r) => r[stage]));
  return {
    copy: at("copy"),
    unpack: at("unpack"),
    squash: at("squash"),
    total: median(results.map((r) => r.copy + r.unpack + r.squash)),
    squashfsBytes: results.at(-1)?.bytes ?? 0,
  };
}
