/**
 * The supervisor: starts the process that becomes the container (the helper,
 * or the nsenter chain that execs runc), passes the terminal, stdin and extra
 * file descriptors to it, forwards signals, and returns its exit status.
 *
 * node:child_process is used because its stdio array places descriptors at
 * given numbers in the child (Deno.Command has only stdin/stdout/stderr).
 *
 * Process group: when the container does not use the terminal, the child gets
 * a session of its own, so a Ctrl-C reaches only shoal, which forwards it
 * once (otherwise runc would get it twice: from the terminal and from
 * shoal). With `-t`, or `-i` on a terminal, the child must stay in the
 * terminal's foreground group to read from it and set its modes; Ctrl-C is
 * then a byte on runc's pseudo-terminal (raw mode), not a signal.
 *
 * runc prints its own fatal error on stderr as well as in its log; stderr is
 * passed through line by line, except such a line, which is held until the
 * end: when runc's log confirms it as runc's failure, shoal says it in one
 * line of its own instead.
 */
import { spawn } from "node:child_process";
import { Buffer } from "node:buffer";
import { constants } from "node:os";

/** Signals shoal passes on to the container. */
export const FORWARDED_SIGNALS: Deno.Signal[] = [
  "SIGINT",
  "SIGTERM",
  "SIGHUP",
  "SIGQUIT",
  "SIGUSR1",
  "SIGUSR2",
];

export interface SuperviseOptions {
  argv: string[];
  /** Pass shoal's stdin (`-i`, `-t`); otherwise the child reads /dev/null. */
  stdin: boolean;
  tty: boolean;
  /** Descriptors (3, 4, ...) handed to the child at the same numbers. */
  extraFds: number[];
  /** Holds back stderr lines starting with this (runc's own fatal error). */
  holdPrefix: string;
}

export interface Supervised {
  /** Exit status, 128+N for death by signal N. */
  status: number;
  /** Stderr lines that were held back, in order. */
  held: string[];
  /** Writes held lines that turned out to be the container's after all. */
  release(): void;
}

/** Runs the child to its end; `onStart` gets its pid (for the run's state). */
export async function supervise(
  opts: SuperviseOptions,
  onStart: (pid: number) => Promise<void> = async () => {},
): Promise<Supervised> {
  const ownsTerminal = opts.tty || (opts.stdin && Deno.stdin.isTerminal());
  const child = spawn(opts.argv[0]!, opts.argv.slice(1), {
    stdio: [opts.stdin ? "inherit" : "ignore", "inherit", "pipe", ...opts.extraFds],
    detached: !ownsTerminal,
  });
  const exited = new Promise<number>((resolve, reject) => {
    child.once("error", reject);
    child.once("exit", (code, signal) => {
      resolve(code ?? 128 + (signal === null ? 0 : constants.signals[signal] ?? 0));
    });
  });
  const forward = FORWARDED_SIGNALS.map((sig) => {
    const handler = () => {
      try {
        if (child.pid !== undefined) Deno.kill(child.pid, sig);
      } catch { /* already gone */ }
    };
    Deno.addSignalListener(sig, handler);
    return () => Deno.removeSignalListener(sig, handler);
  });
  const held: string[] = [];
  const copied = copyStderr(child.stderr!, opts.holdPrefix, held);
  try {
    if (child.pid !== undefined) await onStart(child.pid);
    const status = await exited;
    await copied;
    return {
      status,
      held,
      release: () => {
        for (const line of held) writeAll(Deno.stderr, line);
      },
    };
  } finally {
    for (const stop of forward) stop();
  }
}

function writeAll(out: { writeSync(p: Uint8Array): number }, text: string | Uint8Array) {
  let bytes = typeof text === "string" ? new TextEncoder().encode(text) : text;
  while (bytes.length > 0) {
    try {
      bytes = bytes.subarray(out.writeSync(bytes));
    } catch {
      return; // stderr closed: nothing to tell anyone
    }
  }
}

/** Copies the child's stderr to shoal's, holding back whole lines that start with `prefix`. */
function copyStderr(
  stream: NodeJS.ReadableStream,
  prefix: string,
  held: string[],
): Promise<void> {
  // The current line so far when it may be a held one; undefined when passing through.
  let pending: string | undefined = "";
  const emit = (text: string) => writeAll(Deno.stderr, Buffer.from(text, "latin1"));
  return new Promise((resolve) => {
    stream.on("data", (chunk: Buffer) => {
      let rest = chunk.toString("latin1");
      while (rest.length > 0) {
        const nl = rest.indexOf("\n");
        const piece = nl < 0 ? rest : rest.slice(0, nl + 1);
        rest = nl < 0 ? "" : rest.slice(nl + 1);
        if (pending === undefined) {
          emit(piece);
        } else {
          pending += piece;
          if (!startsLike(pending, prefix)) {
            emit(pending);
            pending = undefined;
          } else if (nl >= 0) {
            held.push(pending);
          }
        }
        if (nl >= 0) pending = "";
      }
    });
    stream.on("end", () => {
      if (pending) held.push(pending);
      resolve();
    });
    stream.on("error", () => resolve());
  });
}

/** Whether `text` begins like `prefix` (a chunk may end inside the prefix). */
function startsLike(text: string, prefix: string): boolean {
  const n = Math.min(text.length, prefix.length);
  return text.slice(0, n) === prefix.slice(0, n);
}
