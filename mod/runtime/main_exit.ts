/**
 * When the container's main process has exited.
 *
 * `runc run` returns the main process's status only once every process
 * holding the container's stdout and stderr has closed them (it copies them
 * through pipes of its own): a `cmd &` left running would keep the run going
 * for as long as it runs. So shoal watches the main process itself, to have
 * what is left killed (supervise.ts): runc writes its pid with `--pid-file`
 * into the bundle once the container runs (a rename into place, seen with
 * inotify, or there already), and a pidfd of that pid becomes readable when
 * it exits. The file is the user's own, so a forged pid can
 * only end the user's own run early.
 *
 * Everything waits in poll(2) on a thread of Deno's pool, with a pipe whose
 * closing (stop()) ends the wait; no timer, no Deno.watchFs (its thread).
 */
import { check, cString, libc, O, ptr } from "../sys/libc.ts";
import { type ChildProcess, statusWithin } from "../sys/spawn.ts";

/** The pid file's name in the bundle (runc's `--pid-file`). */
export const MAIN_PID_FILE = "main.pid";

const IN_NONBLOCK = 0o4000;
const IN_MOVED_TO = 0x80;
const POLLIN = 1;
/** struct inotify_event without its name: wd, mask, cookie, len. */
const EVENT_HEADER = 16;

export interface MainExit {
  /** True when the main process has exited; false when stop() came first. */
  exited: Promise<boolean>;
  stop(): void;
}

/**
 * A run that ends within this time is not watched: most runs do, and the
 * watch (inotify, pidfd, the wake-ups of Deno's threads) costs them ~10 ms.
 */
const QUIET_MS = 100;

/**
 * Watches `dir` (the bundle, as a path) for MAIN_PID_FILE, then its process,
 * from QUIET_MS after `child` (runc's launcher) started, until it ends.
 */
export function watchMainExit(dir: string, child: ChildProcess): MainExit {
  const c = libc();
  const file = `${dir}/${MAIN_PID_FILE}`;
  let stopped = false;
  let stop: Int32Array<ArrayBuffer> | undefined;
  const exited = (async () => {
    if (await statusWithin(child, QUIET_MS) !== undefined || stopped) return false;
    stop = new Int32Array(2);
    check("pipe2", c.pipe2(ptr(stop), O.CLOEXEC));
    const wake = stop[0]!;
    /** Waits until `fd` is readable (true) or stop() (false). */
    const readable = async (fd: number): Promise<boolean> => {
      const fds = new Int32Array([fd, POLLIN, wake, POLLIN]);
      while (await c.poll(fds, 2n, -1) < 0) { /* EINTR */ }
      return fds[3]! >>> 16 === 0;
    };
    const inotify = check("inotify_init1", c.inotify_init1(O.CLOEXEC | IN_NONBLOCK));
    try {
      check("inotify_add_watch", c.inotify_add_watch(inotify, ptr(cString(dir)), IN_MOVED_TO), dir);
      // runc may have written it before the watch began: it stays until the run is over.
      const pid = readPid(file) ?? await pidWritten(inotify, readable, file);
      if (pid === undefined) return false;
      // Gone already (reaped by runc): it has exited.
      const pidfd = c.pidfd_open === null ? -1 : await c.pidfd_open(pid, 0);
      if (pidfd < 0) return c.pidfd_open !== null;
      try {
        return await readable(pidfd);
      } finally {
        c.close(pidfd);
      }
    } finally {
      c.close(inotify);
      c.close(wake);
    }
  })();
  return {
    exited,
    stop: () => {
      if (!stopped && stop !== undefined) c.close(stop[1]!);
      stopped = true;
    },
  };
}

/** The pid runc writes to `file`, once its rename into place shows; undefined at stop(). */
async function pidWritten(
  inotify: number,
  readable: (fd: number) => Promise<boolean>,
  file: string,
): Promise<number | undefined> {
  const events = new Uint8Array(4096);
  const view = new DataView(events.buffer);
  const name = MAIN_PID_FILE;
  while (await readable(inotify)) {
    const n = Number(await libc().read(inotify, events, BigInt(events.length)));
    for (let at = 0; at + EVENT_HEADER <= n;) {
      const len = view.getUint32(at + 12, true);
      const entry = new TextDecoder().decode(
        events.subarray(at + EVENT_HEADER, at + EVENT_HEADER + len),
      );
      at += EVENT_HEADER + len;
      if (entry.replace(/\0+$/, "") !== name) continue;
      const text = readPid(file);
      if (text !== undefined) return text;
    }
  }
  return undefined;
}

/** The pid in `file` (runc's --pid-file), or undefined. */
export function readPid(file: string): number | undefined {
  try {
    const text = Deno.readTextFileSync(file).trim();
    return /^[1-9]\d*$/.test(text) ? Number(text) : undefined;
  } catch {
    return undefined; // replaced or removed meanwhile: only the user can
  }
}
