/**
 * The first exec of a program through squashfuse (the unprivileged path's
 * image mount) by squashfs compression, against a second exec (cached) of the
 * same file: squashfuse decompresses a block for each page it reads, so the
 * compressor shows in every container's start. Busybox's static binary in an
 * image of its own, a fresh mount per run. Medians of several runs. As root
 * (it mounts; the cost is the same inside a user namespace).
 *
 *   .tools/bin/deno run -A bench/squashfuse_exec.ts [RUNS]
 */
import { findTool } from "../mod/config/load.ts";
import { median } from "./lib/stats.ts";

const runs = Number(Deno.args[0] ?? 9);
const squashfuse = findTool(["squashfuse_ll"]);
const fusermount = findTool(["fusermount3", "fusermount"]);
if (Deno.uid() !== 0 || !squashfuse || !fusermount) {
  throw new Error("run as root with squashfuse_ll and fusermount3 installed (scripts/bootstrap)");
}

async function must(cmd: string, args: string[]): Promise<void> {
  const r = await new Deno.Command(cmd, { args, stdout: "null", stderr: "piped" }).output();
  if (!r.success) {
    throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(r.stderr)}`);
  }
}

async function execMs(path: string): Promise<number> {
  const started = performance.now();
  await must(path, []);
  return performance.now() - started;
}

const dir = await Deno.makeTempDir({ prefix: "shoal-bench-fuse-" });
try {
  await Deno.mkdir(`${dir}/root/bin`, { recursive: true });
  await Deno.copyFile("/bin/busybox", `${dir}/root/bin/busybox`);
  await Deno.chmod(`${dir}/root/bin/busybox`, 0o755);
  await Deno.symlink("busybox", `${dir}/root/bin/true`);
  await Deno.mkdir(`${dir}/m`);
  console.log(`exec of busybox true through squashfuse_ll, median of ${runs} fresh mounts`);
  for (const comp of ["zstd", "lz4", "gzip", "none"]) {
    const image = `${dir}/${comp}.sqfs`;
    const how = comp === "none" ? ["-noI", "-noD", "-noF"] : ["-comp", comp];
    await must("mksquashfs", [`${dir}/root`, image, ...how, "-b", "128K", "-quiet", "-noappend"]);
    const first: number[] = [];
    const cached: number[] = [];
    for (let i = 0; i < runs; i++) {
      await must(squashfuse, [image, `${dir}/m`]);
      try {
        first.push(await execMs(`${dir}/m/bin/true`));
        cached.push(await execMs(`${dir}/m/bin/true`));
      } finally {
        await must(fusermount, ["-u", `${dir}/m`]);
      }
    }
    console.log(
      `  ${comp.padEnd(5)} (${(await Deno.stat(image)).size} bytes)   first ${
        median(first).toFixed(1)
      } ms   cached ${median(cached).toFixed(1)} ms`,
    );
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
