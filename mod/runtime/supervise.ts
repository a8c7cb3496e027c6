/**
 * The supervisor: starts the process that becomes the container (the helper,
 * or the nsenter chain that execs runc), passes the terminal, stdin and extra
 * file descriptors to it, forwards signals, and returns its exit status.
 *
 * The child is started with Deno.Command, or, when descriptors beyond
 * stdio are passed (--preserve-fds, PMI_FD), with node:child_process, whose
 * stdio array places them at given numbers in the child; it is imported only
 * then, as loading any node: module adds ~10 ms to shoal's start.
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
  const child = opts.extraFds.length === 0
    ? startChild(opts, ownsTerminal)
    : await startChildWithFds(opts, ownsTerminal);
  const forward = FORWARDED_SIGNALS.map((sig) => {
    const handler = () => {
      try {
        Deno.kill(child.pid, sig);
      } catch { /* already gone */ }
    };
    Deno.addSignalListener(sig, handler);
    return () => Deno.removeSignalListener(sig, handler);
  });
  const held: string[] = [];
  const copied = copyStderr(child.stderr, opts.holdPrefix, held);
  try {
    await onStart(child.pid);
    const status = await child.status;
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

interface Child {
  pid: number;
  /** Exit status, 128+N for death by signal N. */
  status: Promise<number>;
  stderr: ReadableStream<Uint8Array>;
}

/**
 * When the container does not own the terminal, the child gets a session of
 * its own (`detached`), so that a Ctrl-C reaches only shoal (see above).
 */
function startChild(opts: SuperviseOptions, ownsTerminal: boolean): Child {
  const child = new Deno.Command(opts.argv[0]!, {
    args: opts.argv.slice(1),
    stdin: opts.stdin ? "inherit" : "null",
    stdout: "inherit",
    stderr: "piped",
    detached: !ownsTerminal,
  }).spawn();
  return { pid: child.pid, status: child.status.then((s) => s.code), stderr: child.stderr };
}

async function startChildWithFds(opts: SuperviseOptions, ownsTerminal: boolean): Promise<Child> {
  const { spawn } = await import("node:child_process");
  const { constants } = await import("node:os");
  const child = spawn(opts.argv[0]!, opts.argv.slice(1), {
    stdio: [opts.stdin ? "inherit" : "ignore", "inherit", "pipe", ...opts.extraFds],
    detached: !ownsTerminal,
  });
  const status = new Promise<number>((resolve, reject) => {
    child.once("error", reject);
    child.once("exit", (code, signal) => {
      resolve(code ?? 128 + (signal === null ? 0 : constants.signals[signal] ?? 0));
    });
  });
  // Spawning fails asynchronously: an unknown program is an "error" before any pid.
  await new Promise<void>((resolve, reject) => {
    child.once("spawn", resolve);
    child.once("error", reject);
  });
  const stderr = new ReadableStream<Uint8Array>({
    start(controller) {
      child.stderr!.on("data", (chunk: Uint8Array) => controller.enqueue(new Uint8Array(chunk)));
      child.stderr!.once("end", () => controller.close());
      child.stderr!.once("error", () => controller.close());
    },
  });
  return { pid: child.pid!, status, stderr };
}

function writeAll(out: { writeSync(p: Uint8Array): number }, text: string | Uint8Array) {
  let bytes = typeof text === "string" ? latin1(text) : text;
  while (bytes.length > 0) {
    try {
      bytes = bytes.subarray(out.writeSync(bytes));
    } catch {
      return; // stderr closed: nothing to tell anyone
    }
  }
}

/*
 * stderr is handled as text of one char per byte (ISO 8859-1), so that lines
 * can be matched and any bytes (invalid UTF-8 too) pass through unchanged.
 * TextDecoder's "latin1" is windows-1252, which changes 0x80-0x9f.
 */
function latin1(text: string): Uint8Array {
  return Uint8Array.from(text, (c) => c.charCodeAt(0));
}

function fromLatin1(bytes: Uint8Array): string {
  let text = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    text += String.fromCharCode(...bytes.subarray(i, i + 8192));
  }
  return text;
}

/** Copies the child's stderr to shoal's, holding back whole lines that start with `prefix`. */
async function copyStderr(
  stream: ReadableStream<Uint8Array>,
  prefix: string,
  held: string[],
): Promise<void> {
  // The current line so far when it may be a held one; undefined when passing through.
  let pending: string | undefined = "";
  const emit = (text: string) => writeAll(Deno.stderr, text);
  try {
    for await (const chunk of stream) {
      let rest = fromLatin1(chunk);
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
    }
  } catch {
    // A read error ends the copy like the end of the stream.
  }
  if (pending) held.push(pending);
}

/** Whether `text` begins like `prefix` (a chunk may end inside the prefix). */
function startsLike(text: string, prefix: string): boolean {
  const n = Math.min(text.length, prefix.length);
  return text.slice(0, n) === prefix.slice(0, n);
}
