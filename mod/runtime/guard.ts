/**
 * The guard process of path B (see launch_fuse.ts): started first, it makes
 * the user namespace and reports the pid to enter; it cleans up when its
 * stdin, a pipe only shoal holds (close-on-exec on shoal's side, so no other
 * process keeps it open), reaches its end: at finish(), or when shoal dies.
 */
import { spawn } from "node:child_process";
import { ShoalError } from "../errors.ts";

export interface Guard {
  /** The process whose namespaces the container's chain enters. */
  holder: number;
  /** Tells the guard the run is over and waits until it has killed what is left. */
  finish(): Promise<void>;
}

/** How long the guard may take to clean up before shoal stops waiting for it. */
const FINISH_TIMEOUT_MS = 10_000;

export async function startGuard(argv: string[]): Promise<Guard> {
  const child = spawn(argv[0]!, argv.slice(1), {
    stdio: ["pipe", "pipe", "inherit"],
    // Its own session: a Ctrl-C or hangup of the terminal is not for it.
    detached: true,
  });
  const exited = new Promise<number | null>((resolve) => {
    child.once("exit", (code) => resolve(code));
    child.once("error", () => resolve(null));
  });
  const line = await new Promise<string>((resolve) => {
    let text = "";
    child.stdout!.on("data", (chunk: Uint8Array) => {
      text += new TextDecoder().decode(chunk);
      if (text.includes("\n")) resolve(text);
    });
    child.stdout!.once("end", () => resolve(text));
  });
  const holder = Number(line.trim());
  if (!Number.isInteger(holder) || holder <= 0) {
    await exited;
    throw new ShoalError("could not create the container's user namespace", {
      hint: "the line above says why; `shoal doctor` checks newuidmap and user namespaces",
    });
  }
  return {
    holder,
    finish: async () => {
      child.stdin!.end();
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        exited,
        new Promise((resolve) => timer = setTimeout(resolve, FINISH_TIMEOUT_MS)),
      ]);
      clearTimeout(timer);
    },
  };
}
