/**
 * The supervisor: starts the process that becomes the container (the helper,
 * or the nsenter chain that execs runc), passes the terminal, stdin and extra
 * file descriptors to it, forwards signals, and returns its exit status.
 *
 * The child is started with posix_spawn (sys/spawn.ts), which passes on the
 * descriptors shoal was given (--preserve-fds, PMI_FD) at their numbers, as
 * runc expects them.
 *
 * Process group: when the container does not use the terminal, the child gets
 * a session of its own, so a Ctrl-C reaches only shoal, which forwards it
 * once (otherwise runc would get it twice: from the terminal and from
 * shoal). With `-t`, or `-i` on a terminal, the child must stay in the
 * terminal's foreground group to read from it and set its modes; Ctrl-C is
 * then a byte on runc's pseudo-terminal (raw mode), not a signal.
 *
 * The end: when the container's main process exits while other processes of
 * the container still run (a `cmd &`), runc would wait for them to close its
 * output; shoal sees the main process exit (main_exit.ts) and, when runc has
 * not exited soon after, asks for the rest to be killed (`end`: the helper's
 * watchdog or the guard), so that runc returns the main process's status.
 * A stop signal (SIGINT, SIGTERM, SIGHUP) is forwarded like the others and
 * gives the container a grace period (the site's runtime.stopTimeoutSeconds,
 * as `docker stop` and Slurm's KillWait); when it is over, or at a second
 * Ctrl-C (SIGINT), everything in the container is killed and the run's
 * status is 128 + the first signal's number, as a shell reports a job it
 * killed.
 *
 * runc prints its own fatal error on stderr as well as in its log; stderr is
 * passed through line by line, except such a line, which is held until the
 * end: when runc's log confirms it as runc's failure, shoal says it in one
 * line of its own instead.
 */
import { type PipeReader, spawn, statusWithin } from "../sys/spawn.ts";
import { forwardHeldSignals, signalsHeld } from "../sys/signals.ts";
import { libc } from "../sys/libc.ts";
import { watchMainExit } from "./main_exit.ts";

/** Signals shoal passes on to the container. */
export const FORWARDED_SIGNALS: Deno.Signal[] = [
  "SIGINT",
  "SIGTERM",
  "SIGHUP",
  "SIGQUIT",
  "SIGUSR1",
  "SIGUSR2",
];

/** The signals that stop a container, with their numbers. */
const STOP_SIGNALS: Partial<Record<Deno.Signal, number>> = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 };

/**
 * How long runc may take to exit by itself after the main process (a few
 * ms when nothing holds the container's output) before the rest is killed.
 */
const LINGER_MS = 200;
/** How long the child may take to exit once the container was ended, before it is killed. */
const END_MS = 5000;
const SIGKILL = 9;
/**
 * A SIGINT this long after the first stop signal is a second Ctrl-C, which
 * kills at once; sooner, it is the same signal sent twice (`timeout` signals
 * its child and then its process group, shoal included).
 */
const AGAIN_MS = 300;

export interface SuperviseOptions {
  argv: string[];
  /** Pass shoal's stdin (`-i`, `-t`); otherwise the child reads /dev/null. */
  stdin: boolean;
  tty: boolean;
  /** Holds back stderr lines starting with this (runc's own fatal error). */
  holdPrefix: string;
  /**
   * A path to the bundle, where runc writes the main process's pid
   * (MAIN_PID_FILE); none when the child becomes the process itself
   * (shoal-enter), whose exit is the child's.
   */
  bundle?: string;
  /** Seconds the container has to end after a stop signal. */
  stopTimeout: number;
  /** Kills the container's processes, not runc, which then exits with the main one's status. */
  end(child: number): void;
  /** Descriptors given to the child at other numbers (the PMI socket, pmi.ts). */
  moves?: { from: number; to: number }[];
  /** The child's environment, NAME=VALUE, in place of shoal's. */
  env?: string[];
  /** Stop signals that came while the run was being prepared (holdStopSignals). */
  early?: EarlyStop;
}

/** A stop signal shoal got before its container was started, kept for the supervisor. */
export interface EarlyStop {
  /** The first that came, if any. */
  readonly signal: Deno.Signal | undefined;
  /** Stops holding them: from then on the supervisor's own listeners get them. */
  release(): void;
}

/**
 * Holds SIGINT, SIGTERM and SIGHUP from the moment a run starts to make its
 * files: Deno's default would end shoal at once and leave them (a job
 * cancelled while it starts, scancel). A run that got one does not start its
 * container; one that is starting it passes the signal on (supervise).
 */
export function holdStopSignals(): EarlyStop {
  let signal: Deno.Signal | undefined;
  const listeners = Object.keys(STOP_SIGNALS).map((name) => {
    const sig = name as Deno.Signal;
    const handler = () => {
      signal ??= sig;
    };
    Deno.addSignalListener(sig, handler);
    return () => Deno.removeSignalListener(sig, handler);
  });
  let held = true;
  return {
    get signal() {
      return signal;
    },
    release() {
      if (!held) return;
      held = false;
      for (const remove of listeners) remove();
    },
  };
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
  const early = opts.early?.signal;
  if (early !== undefined) {
    // Stopped before it started: nothing to run, and the run's status says why.
    return { status: 128 + STOP_SIGNALS[early]!, held: [], release: () => {} };
  }
  const ownsTerminal = opts.tty || (opts.stdin && Deno.stdin.isTerminal());
  const child = spawn(opts.argv, {
    stdin: opts.stdin ? "inherit" : "null",
    stderr: "pipe",
    newSession: !ownsTerminal,
    moves: opts.moves,
    ...(opts.env !== undefined && { env: opts.env }),
  });
  const main = opts.bundle === undefined ? undefined : watchMainExit(opts.bundle, child);
  let ended = false;
  const end = () => {
    if (ended) return;
    ended = true;
    opts.end(child.pid);
    // A child that does not exit even then (runc stuck) is killed: the run must end. The
    // container is gone by then, and path B's guard cleans up after runc as always.
    statusWithin(child, END_MS).then((status) => {
      if (status === undefined) libc().kill(child.pid, SIGKILL);
    });
  };
  main?.exited.then(async (exited) => {
    if (exited && await statusWithin(child, LINGER_MS) === undefined) end();
  }).catch(() => {/* no watch: runc ends the run as before */});
  /** The first stop signal's number, when it came, and whether the container was killed for it. */
  let stopped: { number: number; at: number } | undefined;
  let killed = false;
  const kill = () => {
    killed = true;
    end();
  };
  const stop = (sig: Deno.Signal) => {
    const number = STOP_SIGNALS[sig];
    if (number === undefined) return;
    if (stopped === undefined) {
      stopped = { number, at: performance.now() };
      // The grace period waits on the child, not on a timer (spawn.ts, statusWithin).
      statusWithin(child, opts.stopTimeout * 1000).then((status) => {
        if (status === undefined && !ended) kill();
      });
    } else if (sig === "SIGINT" && performance.now() - stopped.at >= AGAIN_MS) {
      kill();
    }
  };
  // SIGUSR1 and SIGUSR2 are held blocked, away from Deno (sys/signals.ts), and
  // come through a signalfd; the others through Deno's listeners.
  const usr = signalsHeld();
  const stopHeld = usr ? forwardHeldSignals(child.pid, fromSlurmStep) : async () => {};
  const listened = FORWARDED_SIGNALS.filter((sig) =>
    !usr || (sig !== "SIGUSR1" && sig !== "SIGUSR2")
  );
  const forward = listened.map((sig) => {
    const handler = () => {
      try {
        Deno.kill(child.pid, sig);
      } catch { /* already gone */ }
      stop(sig);
    };
    Deno.addSignalListener(sig, handler);
    return () => Deno.removeSignalListener(sig, handler);
  });
  opts.early?.release();
  const held: string[] = [];
  const copied = copyStderr(child.stderr!, opts.holdPrefix, held);
  try {
    await onStart(child.pid);
    const status = await child.status;
    await copied;
    return {
      status: killed ? 128 + stopped!.number : status,
      held,
      release: () => {
        for (const line of held) writeAll(Deno.stderr, line);
      },
    };
  } finally {
    main?.stop();
    for (const stop of forward) stop();
    await stopHeld();
  }
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
  stream: PipeReader,
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

/**
 * Whether `sender` is a Slurm step daemon: slurmstepd signals every process
 * of the step itself (`scancel --signal`, `srun --signal`; proctrack/cgroup
 * and linuxproc find the container's processes too, as they descend from the
 * task), so the container's process has the signal already and passing it on
 * would deliver it twice. proctrack/pgid, which signals the task's process
 * group only, would need it passed on (docs/hpc.md).
 */
function fromSlurmStep(sender: number): boolean {
  try {
    return Deno.readTextFileSync(`/proc/${sender}/comm`).startsWith("slurmstepd");
  } catch {
    return false;
  }
}
