/**
 * Child processes started with posix_spawn(3) through FFI, for the run path.
 *
 * Deno.Command forks (clone without CLONE_VM): the kernel copies the page
 * tables of Deno's large address space, and Deno loads its process and
 * stream code on first use, ~4-5 ms per child in a fresh process. glibc's
 * posix_spawn shares the address space until the exec (CLONE_VM|CLONE_VFORK):
 * ~0.4 ms, ~1 ms with the first binding of its symbols (bench/startup.ts).
 *
 * The call is made on the JS thread, as Deno.Command makes its own: a
 * parent-death signal (the helper's, PR_SET_PDEATHSIG) fires when the thread
 * that created the child ends, and the JS thread lives as long as shoal.
 *
 * The child gets what Deno.Command would give it: shoal's environment, byte
 * for byte, its descriptors that are not close-on-exec (Deno opens its own
 * with O_CLOEXEC, so those are the ones shoal was given, e.g. PMI_FD), an
 * empty signal mask and SIGPIPE at its default (Deno ignores it).
 */
import { check, cString, ErrnoError, libc, O, ptr } from "./libc.ts";

/** What a standard descriptor of the child is: shoal's own, /dev/null, or a pipe to shoal. */
export type Stdio = "inherit" | "null" | "pipe";

export interface SpawnOptions {
  stdin?: Stdio;
  stdout?: Stdio;
  stderr?: Stdio;
  /** Start the child in a session of its own (setsid), away from the terminal's signals. */
  newSession?: boolean;
  /**
   * Descriptors of shoal's to give the child at other numbers (dup2), in
   * order: a later one's `from` must not be an earlier one's `to`.
   */
  moves?: { from: number; to: number }[];
  /** NAME=VALUE entries in place of shoal's own environment. */
  env?: string[];
}

export interface ChildProcess {
  pid: number;
  /** Exit status; 128+N for death by signal N. */
  status: Promise<number>;
  /** shoal's end of the pipes asked for ("pipe"). */
  stdin?: PipeWriter;
  stdout?: PipeReader;
  stderr?: PipeReader;
}

// glibc's flag values (spawn.h).
const POSIX_SPAWN_SETSIGDEF = 0x04;
const POSIX_SPAWN_SETSIGMASK = 0x08;
const POSIX_SPAWN_SETSID = 0x80;
const SIGPIPE = 13;
// glibc's posix_spawn_file_actions_t (64-bit). Zeroed, it is what
// posix_spawn_file_actions_init makes; its actions are glibc's private
// business, so the posix_spawn_file_actions_add* calls add them.
const FILE_ACTIONS_SIZE = 80;

/** Starts `argv` (argv[0] looked up on PATH when it has no slash). */
export function spawn(argv: string[], opts: SpawnOptions = {}): ChildProcess {
  const c = libc();
  // Kept referenced until posix_spawnp returns: the arrays below point into them.
  const strings: Uint8Array<ArrayBuffer>[] = [];
  const pointerArray = (items: string[]) => {
    const array = new BigUint64Array(items.length + 1);
    items.forEach((item, i) => {
      const s = cString(item);
      strings.push(s);
      array[i] = BigInt(Deno.UnsafePointer.value(ptr(s)));
    });
    return array;
  };
  const args = pointerArray(argv);
  let env: BigUint64Array<ArrayBuffer>;
  if (opts.env === undefined) {
    const own = environment();
    env = own.envp;
    strings.push(own.strings);
  } else {
    env = pointerArray(opts.env);
  }
  const devNull = cString("/dev/null");

  const actions = new Uint8Array(FILE_ACTIONS_SIZE);
  /** Descriptors of pipes: [child's end, shoal's end] per standard descriptor. */
  const pipes: ([number, number] | undefined)[] = [];
  try {
    [opts.stdin, opts.stdout, opts.stderr].forEach((how, fd) => {
      if (how === "null") {
        must(
          "posix_spawn_file_actions_addopen",
          c.posix_spawn_file_actions_addopen(
            ptr(actions),
            fd,
            ptr(devNull),
            fd === 0 ? O.RDONLY : O.WRONLY,
            0,
          ),
        );
      } else if (how === "pipe") {
        const ends = new Int32Array(2);
        check("pipe2", c.pipe2(ptr(ends), O.CLOEXEC));
        // ends[0] reads, ends[1] writes: the child reads its stdin, writes the others.
        const pair: [number, number] = fd === 0 ? [ends[0]!, ends[1]!] : [ends[1]!, ends[0]!];
        pipes[fd] = pair;
        // dup2 clears close-on-exec on the copy, and only on it.
        must(
          "posix_spawn_file_actions_adddup2",
          c.posix_spawn_file_actions_adddup2(ptr(actions), pair[0], fd),
        );
      }
    });
    for (const { from, to } of opts.moves ?? []) {
      must(
        "posix_spawn_file_actions_adddup2",
        c.posix_spawn_file_actions_adddup2(ptr(actions), from, to),
      );
    }
    const attr = spawnAttributes(opts.newSession ?? false);
    const pid = new Int32Array(1);
    // glibc reports a failed exec (no such program, not executable) here, not in the child.
    const rc = c.posix_spawnp(
      ptr(pid),
      ptr(strings[0]!),
      ptr(actions),
      ptr(attr),
      ptr(args),
      ptr(env),
    );
    if (rc !== 0) throw new ErrnoError("cannot start", rc, argv[0]);
    for (const pair of pipes) if (pair !== undefined) c.close(pair[0]);
    const child: ChildProcess = { pid: pid[0]!, status: exitStatus(pid[0]!) };
    if (pipes[0]) child.stdin = new PipeWriter(pipes[0][1]);
    if (pipes[1]) child.stdout = new PipeReader(pipes[1][1]);
    if (pipes[2]) child.stderr = new PipeReader(pipes[2][1]);
    return child;
  } catch (err) {
    for (const pair of pipes) if (pair !== undefined) pair.forEach((fd) => c.close(fd));
    throw err;
  } finally {
    c.posix_spawn_file_actions_destroy(ptr(actions));
  }
}

/**
 * shoal's environment for envp: /proc/self/environ, whose strings are
 * already NUL-terminated, and pointers to where each starts (the caller
 * keeps `strings` alive). Deno.env.toObject() would drop a variable that is
 * not valid UTF-8; shoal never changes its own environment, so what it
 * started with is what it has.
 */
function environment(): { envp: BigUint64Array<ArrayBuffer>; strings: Uint8Array<ArrayBuffer> } {
  const strings = Deno.readFileSync("/proc/self/environ");
  const base = BigInt(Deno.UnsafePointer.value(ptr(strings)));
  const starts: number[] = [];
  // A last string without its NUL (cut short) is left out.
  for (let i = 0, end; (end = strings.indexOf(0, i)) >= 0; i = end + 1) starts.push(i);
  const envp = new BigUint64Array(starts.length + 1);
  starts.forEach((start, k) => envp[k] = base + BigInt(start));
  return { envp, strings };
}

/**
 * A posix_spawnattr_t with the flags and signal sets above, built here rather
 * than by the four posix_spawnattr_* calls: each bound symbol costs ~0.1 ms,
 * and glibc's spawn.h declares the struct (64-bit layout: short __flags,
 * pid_t __pgrp, sigset_t __sd and __ss of 128 bytes, sched_param, int
 * __policy, int __pad[16]), so its layout is part of glibc's ABI.
 */
function spawnAttributes(newSession: boolean): Uint8Array<ArrayBuffer> {
  const DEFAULTS_AT = 8;
  const attr = new Uint8Array(336);
  const flags = POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK |
    (newSession ? POSIX_SPAWN_SETSID : 0);
  new DataView(attr.buffer).setInt16(0, flags, true);
  // Signal n is bit n-1 of the set. The mask (__ss) stays empty: nothing blocked.
  attr[DEFAULTS_AT + ((SIGPIPE - 1) >> 3)] = 1 << ((SIGPIPE - 1) & 7);
  return attr;
}

/** posix_spawn's helpers return an error number rather than setting errno. */
function must(call: string, rc: number): void {
  if (rc !== 0) throw new ErrnoError(call, rc);
}

/**
 * The child's exit status, from waitpid on a thread of Deno's pool. Deno's
 * signal handlers restart interrupted calls; a failure is retried a few
 * times before it counts.
 */
async function exitStatus(pid: number): Promise<number> {
  const status = new Int32Array(1);
  for (let attempt = 0; attempt < 10; attempt++) {
    if (await libc().waitpid(pid, status, 0) !== pid) continue;
    const raw = status[0]!;
    const signal = raw & 0x7f;
    return signal === 0 ? (raw >> 8) & 0xff : 128 + signal;
  }
  throw new Error(`cannot wait for process ${pid}`);
}

/**
 * The child's exit status, or undefined when it still runs after `ms`. The
 * limit is a poll(2) of a pidfd on a thread of Deno's pool, not a timer: the
 * first setTimeout of a process costs ~5 ms, which a run would pay at its
 * end. Without pidfds (before Linux 5.3 or glibc 2.36) it waits without a
 * limit.
 */
export async function statusWithin(child: ChildProcess, ms: number): Promise<number | undefined> {
  // No pidfd: none here, or the child has ended and been reaped, its status known.
  if (await endsWithin(child.pid, ms) === false) return undefined;
  return await child.status;
}

/**
 * Whether process `pid` ends within `ms`, from poll(2) of its pidfd (see
 * statusWithin); undefined when there is no pidfd to wait on: no such
 * process, or none here.
 */
export async function endsWithin(pid: number, ms: number): Promise<boolean | undefined> {
  const c = libc();
  const fd = c.pidfd_open === null ? -1 : await c.pidfd_open(pid, 0);
  if (fd < 0) return undefined;
  try {
    // struct pollfd: int fd, short events (POLLIN: the process ended), short revents.
    const pollfd = new Int32Array([fd, 1]);
    return await c.poll(pollfd, 1n, ms) !== 0;
  } finally {
    c.close(fd);
  }
}

/** shoal's end of a pipe the child reads. */
export class PipeWriter {
  #fd: number | undefined;
  constructor(fd: number) {
    this.#fd = fd;
  }
  /**
   * Writes a short line (at most PIPE_BUF bytes: whole, at once, and without
   * blocking while the pipe has room); false when the child is gone.
   */
  write(line: string): boolean {
    const bytes = new TextEncoder().encode(line);
    return this.#fd !== undefined &&
      libc().write(this.#fd, bytes, BigInt(bytes.length)) === BigInt(bytes.length);
  }

  /** The child reads to its end. */
  close(): void {
    if (this.#fd !== undefined) libc().close(this.#fd);
    this.#fd = undefined;
  }
}

/** shoal's end of a pipe the child writes, read on a thread of Deno's pool. */
export class PipeReader implements AsyncIterable<Uint8Array> {
  #fd: number | undefined;
  #reading = false;
  #closing = false;
  #buffer = new Uint8Array(64 * 1024);
  constructor(fd: number) {
    this.#fd = fd;
  }

  /** The next bytes the child wrote; null at the end (or after close()). */
  async read(): Promise<Uint8Array | null> {
    if (this.#fd === undefined || this.#closing || this.#reading) return null;
    this.#reading = true;
    const n = Number(await libc().read(this.#fd, this.#buffer, BigInt(this.#buffer.length)));
    this.#reading = false;
    // A read error ends the stream as its end does.
    if (n > 0 && !this.#closing) return this.#buffer.slice(0, n);
    this.#release();
    return null;
  }

  /**
   * Stops reading. A read in progress keeps the descriptor until it returns:
   * closing it under the read would let its number be reused meanwhile.
   */
  close(): void {
    this.#closing = true;
    if (!this.#reading) this.#release();
  }

  #release(): void {
    if (this.#fd !== undefined) libc().close(this.#fd);
    this.#fd = undefined;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    for (let chunk = await this.read(); chunk !== null; chunk = await this.read()) yield chunk;
  }
}
