/** Runs shoal from this checkout as a subprocess, as a user would. */
import { fileURLToPath } from "node:url";

export const repoRoot = fileURLToPath(new URL("../../", import.meta.url)).replace(/\/$/, "");
export const shoalScript = `${repoRoot}/scripts/shoal`;

export interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  env?: Record<string, string>;
  stdin?: string;
  cwd?: string;
}

/** Runs a program to completion and returns its exit code and output. */
export async function runCommand(
  cmd: string,
  args: string[],
  options: RunOptions = {},
): Promise<Result> {
  const child = new Deno.Command(cmd, {
    args,
    env: options.env,
    cwd: options.cwd,
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (options.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(options.stdin));
    await w.close();
  }
  const out = await child.output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Runs `shoal ARGS...` from the checkout as the current user. */
export function shoal(args: string[], options: RunOptions = {}): Promise<Result> {
  return runCommand(shoalScript, args, options);
}
