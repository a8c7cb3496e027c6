/**
 * SIGUSR1 and SIGUSR2 kept away from Deno's own signal handling.
 *
 * Since 2.9.2, `deno run` opens a V8 inspector on 127.0.0.1:9229 when its
 * process gets SIGUSR1 (Node.js's convention, installed 500 ms after start,
 * whatever JavaScript listens for the signal): any local user could then
 * connect and run code as the user whose shoal was signalled, and Slurm sends
 * SIGUSR1 routinely (`--signal=USR1@60`, `scancel --signal=USR1`). Deno has no
 * switch for it, and its handler runs on whichever of its threads the kernel
 * picks, so the one defence is that no thread ever takes the signal: shoal
 * runs with SIGUSR1 and SIGUSR2 blocked in every thread from the exec on (the
 * launchers start Deno through `env --block-signal`; a mask set before the
 * exec is inherited by every thread Deno starts). Blocked, the signals stay
 * pending, and `shoal run` takes them through a signalfd and passes them on
 * (supervise.ts); other commands leave them pending, i.e. ignore them.
 * The container's processes start with an empty mask (spawn.ts); the short
 * tools started with Deno.Command (tar2sqfs, credential helpers, doctor's
 * probes) inherit the two blocked.
 *
 * A process started without the mask (`deno run main.ts` by hand, a launcher
 * whose `env` lacks --block-signal) blocks the two on its JS thread and
 * execs itself again, once: the other threads already run, and only an exec
 * reaches them. A `deno compile`d shoal runs on denort, which has no such
 * handler, and forwards the two like the other signals.
 */
import { processStatus } from "./status.ts";
import { check, cString, libc, O, ptr } from "./libc.ts";

export const SIGUSR1 = 10;
export const SIGUSR2 = 12;
/** The signals held blocked, as a kernel signal set (bit n-1 for signal n). */
const HELD = (1n << BigInt(SIGUSR1 - 1)) | (1n << BigInt(SIGUSR2 - 1));
const SIG_BLOCK = 0;
const SIG_SETMASK = 2;
const SFD_CLOEXEC = 0o2000000;
const SFD_NONBLOCK = 0o4000;
const POLLIN = 1;
/** struct signalfd_siginfo, whose first field is the signal's number. */
const SIGINFO_SIZE = 128;

/** Whether SIGUSR1 and SIGUSR2 are blocked, as the launchers start shoal. */
export function signalsHeld(): boolean {
  return (processStatus().sigBlocked & HELD) === HELD;
}

/**
 * Makes sure this process is one whose threads all block SIGUSR1 and SIGUSR2
 * (see above): returns at once when they do, or under denort; otherwise
 * blocks them and execs this program again with the same arguments and
 * environment. Returns when the exec fails (shoal then forwards the two with
 * Deno's listeners, as before).
 */
export function holdSignals(): void {
  if (Deno.build.os !== "linux" || Deno.build.standalone || signalsHeld()) return;
  const lib = Deno.dlopen("libc.so.6", {
    pthread_sigmask: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
    execve: { parameters: ["buffer", "buffer", "buffer"], result: "i32" },
  });
  const old = new BigUint64Array(16);
  const set = new BigUint64Array(16);
  set[0] = HELD;
  if (lib.symbols.pthread_sigmask(SIG_BLOCK, set, old) !== 0) return;
  // argv and environment exactly as this process got them, NUL-terminated strings both.
  const argv = strings(Deno.readFileSync("/proc/self/cmdline"));
  const envp = strings(Deno.readFileSync("/proc/self/environ"));
  lib.symbols.execve(cString("/proc/self/exe"), argv.pointers, envp.pointers);
  // Still here: the exec failed. Keep both arrays' strings alive until now.
  void [argv.bytes, envp.bytes];
  lib.symbols.pthread_sigmask(SIG_SETMASK, old, new BigUint64Array(16));
  lib.close();
}

/** A NULL-terminated array of pointers to the NUL-terminated strings in `bytes`. */
function strings(bytes: Uint8Array<ArrayBuffer>) {
  const base = BigInt(Deno.UnsafePointer.value(ptr(bytes)));
  const starts: number[] = [];
  for (let i = 0, end; (end = bytes.indexOf(0, i)) >= 0; i = end + 1) starts.push(i);
  const pointers = new BigUint64Array(starts.length + 1);
  starts.forEach((start, k) => pointers[k] = base + BigInt(start));
  return { bytes, pointers };
}

/**
 * Passes SIGUSR1 and SIGUSR2, held blocked, to `pid` as they come (and those
 * that came before), until the returned function is called; it resolves once
 * the signalfd is closed. A signal whose sender `reachesAll` says reaches
 * every process itself (Slurm's step signals) is not passed a second time.
 */
export function forwardHeldSignals(
  pid: number,
  reachesAll: (sender: number) => boolean = () => false,
): () => Promise<void> {
  const c = libc();
  const set = new BigUint64Array(16);
  set[0] = HELD;
  const sfd = check("signalfd", c.signalfd(-1, ptr(set), SFD_NONBLOCK | SFD_CLOEXEC));
  // Closing the pipe's write end wakes the poll below: the end of forwarding.
  const stop = new Int32Array(2);
  check("pipe2", c.pipe2(ptr(stop), O.CLOEXEC));
  const loop = (async () => {
    // Two struct pollfd: int fd, short events, short revents.
    const fds = new Int32Array([sfd, POLLIN, stop[0]!, POLLIN]);
    const info = new Uint8Array(SIGINFO_SIZE * 4);
    const view = new DataView(info.buffer);
    try {
      while (true) {
        fds[1] = POLLIN;
        fds[3] = POLLIN;
        if (await c.poll(fds, 2n, -1) < 0) continue; // EINTR
        if (fds[3]! >>> 16 !== 0) return;
        if (fds[1]! >>> 16 === 0) continue;
        const n = Number(await c.read(sfd, info, BigInt(info.length)));
        for (let at = 0; at + SIGINFO_SIZE <= n; at += SIGINFO_SIZE) {
          const signo = view.getUint32(at, true);
          // struct signalfd_siginfo: ssi_signo, ssi_errno, ssi_code, then ssi_pid.
          if (reachesAll(view.getUint32(at + 12, true))) continue;
          try {
            Deno.kill(pid, signo === SIGUSR1 ? "SIGUSR1" : "SIGUSR2");
          } catch { /* already gone */ }
        }
      }
    } finally {
      c.close(sfd);
      c.close(stop[0]!);
    }
  })();
  return async () => {
    c.close(stop[1]!);
    await loop;
  };
}
