/**
 * Advisory file locks (flock(2), through Deno.FsFile.tryLock) with a bounded
 * wait. flock locks belong to the open file, so they are released by the
 * kernel when the holder dies, even by SIGKILL: a crash never leaves a
 * repository locked. Shared locks do not wait for each other, so any number
 * of readers proceed at once; an exclusive lock waits for all of them.
 *
 * The file calls are sync (every run's start takes a lock, and each async call
 * costs ~0.5 ms in a fresh process, bench/startup.ts); only the wait between
 * attempts is async, so that a waiting process does not block.
 */
import { basename } from "../../path.ts";
import { ShoalError } from "../../errors.ts";
import { sleep } from "../../sys/sleep.ts";

export type LockMode = "shared" | "exclusive";

export interface LockOptions {
  mode: LockMode;
  timeoutSeconds: number;
  /** What the lock guards, for messages: "repository lock", "pull lock of debian:latest". */
  what: string;
  /** Create the lock file (with this mode) when missing; otherwise a missing file throws NotFound. */
  createMode?: number;
  /** Called once when the lock is busy, with who holds it, before waiting. */
  onWait?: (holders: string) => void;
}

export interface FileLock extends AsyncDisposable {
  readonly path: string;
  release(): void;
}

const FIRST_DELAY_MS = 2;
const MAX_DELAY_MS = 200;

/**
 * Takes the lock on `path`, polling with growing, jittered delays (flock has
 * no timeout of its own) until `timeoutSeconds` have passed; then throws one
 * line naming the file and the processes that hold it.
 */
export async function acquireLock(path: string, options: LockOptions): Promise<FileLock> {
  const exclusive = options.mode === "exclusive";
  // Readers open read-only (the centralized repository's lock file is root's); NFS turns
  // flock into POSIX locks, whose write locks need a file open for writing.
  const file = Deno.openSync(
    path,
    options.createMode === undefined
      ? { read: true, write: exclusive }
      : { read: true, write: true, create: true, mode: options.createMode },
  );
  try {
    await waitFor(file, path, exclusive, options);
    if (exclusive && options.createMode !== undefined) recordOwner(file);
  } catch (err) {
    file.close();
    throw err;
  }
  let held = true;
  const release = () => {
    if (!held) return;
    held = false;
    file.close(); // closing the last descriptor drops the flock
  };
  return { path, release, [Symbol.asyncDispose]: () => Promise.resolve(release()) };
}

/**
 * Takes the lock only if it is free now; undefined when someone holds it.
 * Async for callers that hold it as a promise.
 */
// deno-lint-ignore require-await
export async function tryAcquireLock(path: string, mode: LockMode): Promise<FileLock | undefined> {
  // NFS turns flock into POSIX locks, whose write locks need a file open for writing.
  const file = Deno.openSync(path, { read: true, write: mode === "exclusive" });
  let locked = false;
  try {
    locked = file.tryLockSync(mode === "exclusive");
  } catch (err) {
    file.close();
    throw lockError(path, err);
  }
  if (!locked) {
    file.close();
    return undefined;
  }
  const release = () => file.close();
  return { path, release, [Symbol.asyncDispose]: () => Promise.resolve(release()) };
}

async function waitFor(
  file: Deno.FsFile,
  path: string,
  exclusive: boolean,
  options: LockOptions,
): Promise<void> {
  const deadline = Date.now() + options.timeoutSeconds * 1000;
  let delay = FIRST_DELAY_MS;
  for (let attempt = 0;; attempt++) {
    let locked: boolean;
    try {
      locked = file.tryLockSync(exclusive);
    } catch (err) {
      throw lockError(path, err);
    }
    if (locked) return;
    const left = deadline - Date.now();
    if (left <= 0) {
      throw new ShoalError(
        `timed out after ${options.timeoutSeconds} s waiting for the ${options.what} ` +
          `"${path}"; ${describeHolders(path)}`,
        {
          hint: "wait for that process to finish, or raise locks.timeoutSeconds in the site config",
        },
      );
    }
    if (attempt === 0) options.onWait?.(describeHolders(path));
    // Jitter keeps thousands of waiting readers from retrying in lockstep.
    await sleep(Math.min(left, delay * (0.5 + Math.random())));
    delay = Math.min(delay * 2, MAX_DELAY_MS);
  }
}

function lockError(path: string, err: unknown): ShoalError {
  return new ShoalError(`cannot lock "${path}": ${(err as Error).message}`, {
    hint: "the repository's filesystem must support flock (on Lustre, mount it with -o flock)",
    cause: err,
  });
}

/**
 * Leaves the writer's pid and host in the lock file: the one clue about a
 * holder on another node, where /proc/locks cannot see.
 */
function recordOwner(file: Deno.FsFile): void {
  const note = new TextEncoder().encode(`pid ${Deno.pid} on ${Deno.hostname()}\n`);
  file.truncateSync(0);
  file.seekSync(0, Deno.SeekMode.Start);
  for (let off = 0; off < note.length;) off += file.writeSync(note.subarray(off));
}

const MAX_HOLDERS_NAMED = 3;

/**
 * Who holds locks on `path`: processes on this node from /proc/locks, with
 * their command lines; otherwise the last writer noted in the file.
 */
function describeHolders(path: string): string {
  let holders: Holder[] = [];
  try {
    holders = localHolders(path);
  } catch { /* no /proc/locks: fall back on the note */ }
  if (holders.length > 0) {
    const named = holders.slice(0, MAX_HOLDERS_NAMED).map((h) =>
      `pid ${h.pid}${h.command ? ` (${h.command})` : ""} ${h.write ? "writing" : "reading"}`
    );
    const more = holders.length - named.length;
    return `held by ${named.join(", ")}${more > 0 ? ` and ${more} more` : ""}`;
  }
  let note = "";
  try {
    note = Deno.readTextFileSync(path).trim();
  } catch { /* unreadable: no note */ }
  return `no process on this node holds it (another node or container may${
    note ? `; last writer: ${note}` : ""
  })`;
}

interface Holder {
  pid: number;
  write: boolean;
  command: string;
}

function localHolders(path: string): Holder[] {
  const info = Deno.statSync(path);
  const dev = info.dev;
  // /proc/locks prints MAJOR:MINOR:INODE with the device numbers in hex (new_encode_dev layout).
  const major = ((dev >> 8) & 0xfff) | (Math.floor(dev / 2 ** 32) & ~0xfff);
  const minor = (dev & 0xff) | ((dev >> 12) & ~0xff);
  const id = `${major.toString(16).padStart(2, "0")}:${
    minor.toString(16).padStart(2, "0")
  }:${info.ino}`;
  const holders: Holder[] = [];
  for (const line of Deno.readTextFileSync("/proc/locks").split("\n")) {
    const fields = line.trim().split(/\s+/);
    // Waiters are listed as "N: -> FLOCK ..."; only granted locks count.
    if (fields[1] === "->" || fields[5] !== id) continue;
    const pid = Number(fields[4]);
    if (!Number.isInteger(pid) || pid <= 0 || holders.some((h) => h.pid === pid)) continue;
    holders.push({ pid, write: fields[3] === "WRITE", command: commandOf(pid) });
  }
  return holders;
}

const MAX_COMMAND_CHARS = 80;

/**
 * The holder's command line, shortened from the middle: the program's name
 * and the last arguments (`shoal pull IMAGE`) say the most.
 */
function commandOf(pid: number): string {
  let raw = "";
  try {
    raw = Deno.readTextFileSync(`/proc/${pid}/cmdline`);
  } catch { /* the process is gone */ }
  const [program, ...args] = raw.split("\0").filter((a) => a !== "");
  if (program === undefined) return "";
  const head = basename(program);
  const tail: string[] = [];
  let length = head.length;
  for (const arg of args.toReversed()) {
    if (length + arg.length + 5 > MAX_COMMAND_CHARS) break;
    tail.unshift(arg);
    length += arg.length + 1;
  }
  return [head, ...(tail.length < args.length ? ["..."] : []), ...tail].join(" ");
}
