/**
 * The guard of path B (see launch_fuse.ts): started first, it makes the user
 * namespace with the container's mappings, mounts the image, and reports the
 * holder's pid to enter. It ends the container's processes when shoal writes
 * "end" on its stdin, and cleans up everything when that stdin, a pipe only
 * shoal holds (close-on-exec on shoal's side, so no other process keeps it
 * open), reaches its end: at finish(), or when shoal dies.
 */
import { ShoalError } from "../errors.ts";
import { guardArgv, type GuardMount, type IdMaps } from "./launch_fuse.ts";
import { type PipeReader, spawn, statusWithin } from "../sys/spawn.ts";

export interface Guard {
  /** The process whose namespaces the container's chain enters. */
  holder: number;
  /** Kills the container's processes, not runc's: runc then exits with the container's status. */
  end(): void;
  /**
   * Tells the guard the run is over and waits until it has killed what is left
   * (again: the same wait).
   */
  finish(): Promise<void>;
}

/** How long the guard may take to clean up before shoal stops waiting for it. */
const FINISH_TIMEOUT_MS = 10_000;

/** Starts the guard's `script` (layout.guardScript); with `mount`, it also mounts the image. */
export async function startGuard(
  script: string,
  maps: IdMaps,
  mount?: GuardMount,
): Promise<Guard> {
  // sh would say it cannot open it, and shoal that the guard ended: one line instead.
  try {
    Deno.statSync(script);
  } catch {
    throw new ShoalError(`${script} is missing: this installation of shoal is incomplete`, {
      hint: "install shoal again (install.sh installs it)",
    });
  }
  // Its own session: a Ctrl-C or hangup of the terminal is not for it.
  const child = spawn(guardArgv(script, maps, mount), {
    stdin: "pipe",
    stdout: "pipe",
    newSession: true,
  });
  const output = child.stdout!;
  let finished: Promise<void> | undefined;
  const finish = () =>
    finished ??= (async () => {
      child.stdin!.close();
      await statusWithin(child, FINISH_TIMEOUT_MS);
      output.close();
    })();
  const line = await firstLine(output);
  if (!/^[1-9]\d*$/.test(line)) {
    await finish();
    throw new ShoalError(
      mount !== undefined && line.startsWith("cannot ")
        ? line
        : `could not create the container's user namespace: ${line || "its guard ended"}`,
      { hint: "`shoal doctor` checks user namespaces, newuidmap and your subordinate ids" },
    );
  }
  return { holder: Number(line), finish, end: () => child.stdin!.write("end\n") };
}

/** The first line of the guard's output: the holder's pid, or why there is none. */
async function firstLine(output: PipeReader): Promise<string> {
  const decoder = new TextDecoder();
  let text = "";
  while (!text.includes("\n")) {
    const chunk = await output.read();
    if (chunk === null) break;
    text += decoder.decode(chunk, { stream: true });
  }
  return text.split("\n")[0]!.trim();
}
