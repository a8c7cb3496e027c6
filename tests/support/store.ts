/**
 * Images for the store tests. The store never looks inside a squashfs file,
 * so a test image is a file whose content derives from a seed, as do its
 * config digest and labels: any listed image can be checked for a squashfs
 * and metadata that belong together.
 */
import { join } from "node:path";
import { createHash } from "node:crypto";
import type { NewImage } from "../../mod/image/store/store.ts";
import { repoRoot } from "./shoal.ts";

export const WORKER = join(repoRoot, "tests", "support", "store_worker.ts");

export function sha256(text: string): string {
  return `sha256:${createHash("sha256").update(text).digest("hex")}`;
}

/** 64 KiB derived from the seed. */
export function squashfsContent(seed: string): string {
  const line = `not really squashfs: ${seed}\n`;
  return line.repeat(Math.ceil(65536 / line.length)).slice(0, 65536);
}

export function fakeImage(
  seed: string,
  ref: { registry?: string; repository?: string; tag?: string; digest?: string } = {},
): NewImage {
  const image: NewImage = {
    registry: ref.registry ?? "127.0.0.1:5000",
    repository: ref.repository ?? "test/busybox",
    digest: ref.digest ?? sha256(`manifest ${seed}`),
    server: ref.registry ?? "127.0.0.1:5000",
    configDigest: sha256(`config ${seed}`),
    platform: { os: "linux", architecture: "amd64" },
    env: ["PATH=/usr/bin:/bin", `SEED=${seed}`],
    entrypoint: [],
    cmd: ["/bin/sh"],
    workdir: "/",
    user: "",
    labels: { seed },
    passwd: "root:x:0:0:root:/root:/bin/sh\n",
    group: "root:x:0:\n",
    created: "2024-01-02T03:04:05Z",
    layers: [sha256(`layer ${seed}`)],
  };
  if (ref.digest === undefined || ref.tag !== undefined) image.tag = ref.tag ?? "latest";
  return image;
}

/** Writes the squashfs of `seed` into `dir` (a store tempDir) and returns its path. */
export async function fakeSquashfs(dir: string, seed: string): Promise<string> {
  const path = join(dir, "image.sqsh");
  await Deno.writeTextFile(path, squashfsContent(seed));
  return path;
}

/** `deno` arguments that run the worker (store_worker.ts) with `args`. */
export function workerArgs(args: string[]): string[] {
  return [
    "run",
    "-A",
    "--quiet",
    "--no-prompt",
    "--config",
    join(repoRoot, "deno.json"),
    WORKER,
    ...args,
  ];
}

function workerCommand(args: string[]): Deno.Command {
  return new Deno.Command(Deno.execPath(), {
    args: workerArgs(args),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}

export interface WorkerResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the worker (store_worker.ts) to completion. */
export async function runWorker(args: string[]): Promise<WorkerResult> {
  const out = await workerCommand(args).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** A worker running in the background, read line by line. */
export class Worker {
  readonly #child: Deno.ChildProcess;
  readonly #lines: ReadableStreamDefaultReader<string>;
  #seen = "";

  constructor(args: string[]) {
    this.#child = workerCommand(args).spawn();
    this.#lines = this.#child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  }

  get pid(): number {
    return this.#child.pid;
  }

  /** Waits until the worker prints `line`; throws if it ends first. */
  async waitFor(line: string): Promise<void> {
    for (;;) {
      if (this.#seen.split("\n").includes(line)) return;
      const { value, done } = await this.#lines.read();
      if (done) {
        const err = await new Response(this.#child.stderr).text();
        throw new Error(
          `worker ended before printing ${JSON.stringify(line)}: ${this.#seen}${err}`,
        );
      }
      this.#seen += value;
    }
  }

  /** Kills the worker with `signal` and waits for it to be gone. */
  async kill(signal: Deno.Signal = "SIGKILL"): Promise<void> {
    try {
      this.#child.kill(signal);
    } catch { /* already gone */ }
    await this.#child.status;
    await this.#lines.cancel();
    await this.#child.stderr.cancel();
  }
}
