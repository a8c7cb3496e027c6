/**
 * What the image's squashfs compression costs: the size and conversion time
 * of the Debian bookworm minbase image (tar2sqfs, as a pull runs it), and the
 * first run of a program from a fresh mount, the way every container start
 * reads it, through the kernel's squashfs on a loop device (the helper path)
 * and through squashfuse_ll (the unprivileged path), against a second run
 * (cached). Busybox's `true` and, from the Debian image, `bash -c true`,
 * `perl -v` and `apt-get -v`. Medians of several fresh mounts. As root (it
 * mounts; the cost is the same inside a user namespace).
 *
 *   .tools/bin/deno run -A bench/compression.ts [RUNS]
 */
import { findTool } from "../mod/config/load.ts";
import { debianImageLayer } from "../tests/support/debian.ts";
import { median } from "./lib/stats.ts";

const runs = Number(Deno.args[0] ?? 9);
const squashfuse = findTool(["squashfuse_ll"]);
const fusermount = findTool(["fusermount3", "fusermount"]);
const tar2sqfs = findTool(["tar2sqfs"]);
if (Deno.uid() !== 0 || !squashfuse || !fusermount || !tar2sqfs) {
  throw new Error(
    "run as root with squashfuse_ll, fusermount3 and tar2sqfs installed (scripts/bootstrap)",
  );
}

async function must(cmd: string, args: string[], stdin?: string): Promise<void> {
  const child = new Deno.Command(cmd, {
    args,
    stdin: stdin ? "piped" : "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  if (stdin) await (await Deno.open(stdin)).readable.pipeTo(child.stdin);
  const r = await child.output();
  if (!r.success) {
    throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(r.stderr)}`);
  }
}

async function timed(what: () => Promise<void>): Promise<number> {
  const started = performance.now();
  await what();
  return performance.now() - started;
}

const compressions = ["lz4", "zstd", "gzip"] as const;
type Compression = typeof compressions[number];

/** tar2sqfs's options for a compression, as a pull passes them (zstd at shoal's level 3). */
function tar2sqfsArgs(comp: Compression): string[] {
  return ["--compressor", comp, ...(comp === "zstd" ? ["--comp-extra", "level=3"] : [])];
}

const mounts = {
  kernel: (image: string, at: string) => must("mount", ["-o", "loop,ro", image, at]),
  squashfuse: (image: string, at: string) => must(squashfuse, [image, at]),
};
const unmounts = {
  kernel: (at: string) => must("umount", [at]),
  squashfuse: (at: string) => must(fusermount, ["-u", at]),
};

/** First and second run of `argv` (chrooted into the mount), medians over fresh mounts. */
async function firstRun(
  how: keyof typeof mounts,
  image: string,
  at: string,
  argv: string[],
): Promise<[number, number]> {
  const first: number[] = [];
  const cached: number[] = [];
  const run = () => must("chroot", [at, ...argv]);
  for (let i = 0; i < runs; i++) {
    await mounts[how](image, at);
    try {
      first.push(await timed(run));
      cached.push(await timed(run));
    } finally {
      await unmounts[how](at);
    }
  }
  return [median(first), median(cached)];
}

const dir = await Deno.makeTempDir({ prefix: "shoal-bench-compression-" });
try {
  const at = `${dir}/m`;
  await Deno.mkdir(at);
  const tars = { busybox: `${dir}/busybox.tar`, debian: `${dir}/debian.tar` };
  await Deno.mkdir(`${dir}/bb/bin`, { recursive: true });
  await Deno.copyFile("/bin/busybox", `${dir}/bb/bin/busybox`);
  await Deno.chmod(`${dir}/bb/bin/busybox`, 0o755);
  await Deno.symlink("busybox", `${dir}/bb/bin/true`);
  await must("tar", ["-C", `${dir}/bb`, "-cf", tars.busybox, "."]);
  const layer = await debianImageLayer();
  await must("sh", ["-c", `gzip -dc < "${layer.path}" > "${tars.debian}"`]);
  const programs = {
    busybox: [["/bin/true"]],
    debian: [["/bin/bash", "-c", "true"], ["/usr/bin/perl", "-v"], ["/usr/bin/apt-get", "-v"]],
  };

  console.log(`squashfs compression, 128 KiB blocks; runs: median of ${runs} fresh mounts`);
  for (const comp of compressions) {
    for (const [name, tar] of Object.entries(tars) as [keyof typeof tars, string][]) {
      const image = `${dir}/${name}-${comp}.sqfs`;
      const convert = await timed(() =>
        must(tar2sqfs, ["--quiet", "--no-skip", ...tar2sqfsArgs(comp), image], tar)
      );
      const size = (await Deno.stat(image)).size / 1e6;
      console.log(
        `${comp.padEnd(5)} ${name.padEnd(8)} ${size.toFixed(1).padStart(6)} MB, ` +
          `tar2sqfs ${convert.toFixed(0)} ms`,
      );
      for (const argv of programs[name]) {
        const cells = [];
        for (const how of ["kernel", "squashfuse"] as const) {
          const [first, cached] = await firstRun(how, image, at, argv);
          cells.push(`${how} first ${first.toFixed(1)} ms, cached ${cached.toFixed(1)} ms`);
        }
        console.log(`        ${argv.join(" ").padEnd(20)} ${cells.join("   ")}`);
      }
    }
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
