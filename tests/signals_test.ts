/**
 * No signal opens a listening socket in a shoal process (Deno >= 2.9.2 opens a
 * V8 inspector on 127.0.0.1:9229 for SIGUSR1: mod/sys/signals.ts), and
 * SIGUSR1 and SIGUSR2 still reach the container. Run as the test user through
 * the installed launcher, past Deno's 500 ms grace before it listens for
 * SIGUSR1.
 */
import { assert, assertEquals } from "./support/assert.ts";
import { runSite } from "./support/run.ts";

const SIGKILL = 9;
const SIGSTOP = 19;
/** Signals whose default action is to do nothing, and those that stop the process. */
const DEFAULT_IGNORED = new Set([17, 18, 23, 28]); // CHLD CONT URG WINCH
const DEFAULT_STOPS = new Set([20, 21, 22]); // TSTP TTIN TTOU
const SIGCONT = 18;
/** Deno's grace before it listens for SIGUSR1, with a margin. */
const GRACE_MS = 800;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Inodes of the sockets `pid` has open. */
function socketInodes(pid: number): Set<string> {
  const inodes = new Set<string>();
  for (const e of Deno.readDirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(Deno.readLinkSync(`/proc/${pid}/fd/${e.name}`));
      if (m) inodes.add(m[1]!);
    } catch { /* closed meanwhile */ }
  }
  return inodes;
}

/**
 * The listening sockets of `pid`, as "tcp 0100007F:240D" lines: TCP in LISTEN,
 * bound UDP, unix sockets that accept (from its network namespace's /proc/net).
 */
function listeningSockets(pid: number): string[] {
  const inodes = socketInodes(pid);
  const found: string[] = [];
  for (const proto of ["tcp", "tcp6", "udp", "udp6"]) {
    const lines = Deno.readTextFileSync(`/proc/${pid}/net/${proto}`).trim().split("\n").slice(1);
    for (const line of lines) {
      const f = line.trim().split(/\s+/);
      const listens = proto.startsWith("tcp") ? f[3] === "0A" : true;
      if (listens && inodes.has(f[9]!)) found.push(`${proto} ${f[1]}`);
    }
  }
  const unix = Deno.readTextFileSync(`/proc/${pid}/net/unix`).trim().split("\n").slice(1);
  for (const line of unix) {
    const f = line.trim().split(/\s+/);
    // Flags __SO_ACCEPTCON: listen(2) was called.
    if ((parseInt(f[3]!, 16) & 0x10000) !== 0 && inodes.has(f[6]!)) {
      found.push(`unix ${f[7] ?? "@"}`);
    }
  }
  return found;
}

/** Signals `pid` catches, ignores or blocks (/proc/PID/status), as numbers. */
function handledSignals(pid: number): Set<number> {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  let mask = 0n;
  for (const name of ["SigBlk", "SigIgn", "SigCgt"]) {
    mask |= BigInt(`0x${new RegExp(`${name}:\\s*([0-9a-f]+)`).exec(status)![1]}`);
  }
  const out = new Set<number>();
  for (let n = 1; n <= 64; n++) if ((mask >> BigInt(n - 1)) & 1n) out.add(n);
  return out;
}

function alive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return !/^\d+ \(.*\) [ZX]/.test(stat);
  } catch {
    return false;
  }
}

function kill(pid: number, signo: number): void {
  // Deno.kill takes names only; real-time signals have none.
  const r = new Deno.Command("kill", { args: [`-${signo}`, String(pid)] }).outputSync();
  assertEquals(r.code, 0, new TextDecoder().decode(r.stderr));
}

/**
 * The signals to send: every catchable one the process handles (catches,
 * ignores or blocks, sampled after the grace) or whose default is to ignore
 * or stop. The others are at their default of ending the process: the kernel
 * ends it without running any of its code.
 */
function signalsToSend(pid: number): number[] {
  const handled = handledSignals(pid);
  const out: number[] = [];
  for (let n = 1; n <= 64; n++) {
    if (n === SIGKILL || n === SIGSTOP || n === 32 || n === 33) continue;
    if (handled.has(n) || DEFAULT_IGNORED.has(n) || DEFAULT_STOPS.has(n)) out.push(n);
  }
  return out;
}

/**
 * Sends each signal of signalsToSend (of the first process) to processes
 * `start` makes, a new one whenever a signal ended the last, and checks after
 * each that the process has no listening socket. Returns the signals sent.
 */
async function sendAll(
  start: () => Promise<{ pid: number; done: Promise<unknown> }>,
): Promise<number[]> {
  let signals: number[] | undefined;
  let next = 0;
  while (signals === undefined || next < signals.length) {
    const { pid, done } = await start();
    try {
      await sleep(GRACE_MS);
      assert(alive(pid), "shoal ended before any signal");
      assertEquals(listeningSockets(pid), [], "before any signal");
      signals ??= signalsToSend(pid);
      while (next < signals.length && alive(pid)) {
        const signo = signals[next++]!;
        kill(pid, signo);
        if (DEFAULT_STOPS.has(signo)) {
          await sleep(200);
          assertEquals(listeningSockets(pid), [], `after signal ${signo}`);
          kill(pid, SIGCONT);
        }
        await sleep(300);
        if (!alive(pid)) break;
        assertEquals(listeningSockets(pid), [], `after signal ${signo}`);
      }
    } finally {
      if (alive(pid)) kill(pid, SIGKILL);
      await done;
    }
  }
  return signals;
}

Deno.test("signals open no listening socket in `shoal run`; SIGUSR1 and SIGUSR2 reach the container", async () => {
  const s = await runSite(true);
  await s.writeConfig();
  const image = await s.image("user");
  const seen: string[] = [];
  const sent = await sendAll(async () => {
    const child = await s.spawn("user", ["run", image, "/opt/traps"]);
    const out = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    while (!text.includes("ready\n")) {
      const { value, done } = await out.read();
      assert(!done, `shoal run ended before the container was ready: ${text}`);
      text += value;
    }
    const collected = (async () => {
      for (let r = await out.read(); !r.done; r = await out.read()) text += r.value;
      seen.push(...text.split("\n").filter((l) => l !== ""));
    })();
    return { pid: child.pid, done: Promise.all([child.status, collected, child.stderr.cancel()]) };
  });
  for (const signo of [10, 12]) assert(sent.includes(signo), `signal ${signo} not sent`);
  assert(seen.includes("got USR1"), `the container did not get SIGUSR1: ${seen.join(" | ")}`);
  assert(seen.includes("got USR2"), `the container did not get SIGUSR2: ${seen.join(" | ")}`);
});

Deno.test("signals open no listening socket in `shoal pull`", async () => {
  const s = await runSite(true);
  // A registry that accepts connections and never answers: the pull waits.
  const silent = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const host = `127.0.0.1:${silent.addr.port}`;
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of silent) held.push(conn);
  })();
  await s.writeConfig({
    registries: {
      insecure: [...(s.baseConfig.registries as { insecure: string[] }).insecure, host],
    },
  });
  try {
    const sent = await sendAll(async () => {
      const before = held.length;
      const child = await s.spawn("user", ["pull", "-q", `${host}/shoal/never:1`]);
      while (held.length === before) await sleep(50);
      return {
        pid: child.pid,
        done: Promise.all([child.status, child.stdout.cancel(), child.stderr.cancel()]),
      };
    });
    for (const signo of [10, 12]) assert(sent.includes(signo), `signal ${signo} not sent`);
  } finally {
    silent.close();
    for (const conn of held) conn.close();
    await accepting.catch(() => {});
  }
});
