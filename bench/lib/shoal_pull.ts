/**
 * `shoal pull` from the checkout, timed end to end (wall clock, as a user
 * waits for it), with the stage times shoal reports under --verbose and the
 * peak RSS of the shoal process itself (VmHWM, sampled until it exits).
 */
import { shoalScript } from "../../tests/support/shoal.ts";

export interface ShoalPullRun {
  /** Milliseconds. */
  total: number;
  resolve: number;
  download: number;
  convert: number;
  downloadedBytes: number;
  /** Peak resident set of the shoal process, bytes. */
  peakRss: number;
  squashfsBytes: number;
}

const units: Record<string, number> = { B: 1, kB: 1e3, MB: 1e6, GB: 1e9, TB: 1e12 };

function bytesOf(text: string): number {
  const [n, unit] = text.split(" ");
  return Number(n) * (units[unit ?? "B"] ?? NaN);
}

async function peakRss(pid: number): Promise<number> {
  try {
    const status = await Deno.readTextFile(`/proc/${pid}/status`);
    return Number(/^VmHWM:\s+(\d+) kB/m.exec(status)?.[1] ?? 0) * 1024;
  } catch {
    return 0;
  }
}

/** One pull into `dataHome` (a fresh or warm repository, as the caller wants). */
export async function shoalPull(reference: string, dataHome: string): Promise<ShoalPullRun> {
  const started = performance.now();
  const child = new Deno.Command(shoalScript, {
    args: ["pull", "--verbose", "--tls-verify=false", reference],
    env: { XDG_DATA_HOME: dataHome },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let peak = 0;
  let exited = false;
  const done = child.output().finally(() => exited = true);
  while (!exited) {
    peak = Math.max(peak, await peakRss(child.pid));
    await new Promise((r) => setTimeout(r, 20));
  }
  const out = await done;
  const total = performance.now() - started;
  const stderr = new TextDecoder().decode(out.stderr);
  const stdout = new TextDecoder().decode(out.stdout);
  if (!out.success) throw new Error(`shoal pull ${reference} failed: ${stderr.trim()}`);
  const stages = /resolve ([\d.]+) s, download ([\d.]+) s \(([\d.]+ \w+)\), convert ([\d.]+) s/
    .exec(stderr);
  const size = /IMAGE ID [0-9a-f]+, ([\d.]+ \w+)\)/.exec(stdout);
  return {
    total,
    resolve: Number(stages?.[1] ?? 0) * 1000,
    download: Number(stages?.[2] ?? 0) * 1000,
    convert: Number(stages?.[4] ?? 0) * 1000,
    downloadedBytes: stages ? bytesOf(stages[3]!) : 0,
    peakRss: peak,
    squashfsBytes: size ? bytesOf(size[1]!) : 0,
  };
}
