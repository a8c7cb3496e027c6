/**
 * A private Slurm for one test file: Debian's munged, slurmctld and slurmd
 * (Slurm 22.05), one node named after this host, with their key, socket,
 * configuration, state, spool and logs in a temp dir of their own.
 *
 * Everything runs in a network namespace the setup creates (`ip netns add`),
 * so the daemons' ports (off-default ones) are reachable from nowhere else,
 * and whatever Slurm starts (slurmstepd, the job's tasks, shoal and its
 * containers, which share the caller's network) is found by that namespace:
 * stop() ends every process in it, TERM then KILL, and throws if one is left.
 * Slurm refuses to start where only loopback is up (getaddrinfo with
 * AI_ADDRCONFIG finds no address), so the namespace also holds a veth pair
 * with both ends inside it, holding a TEST-NET-1 address and no route out.
 *
 * Users run Slurm's commands through `run()`/`argv()`, which enter the
 * namespace and set SLURM_CONF. Always stop it:
 *
 *   await using slurm = await startSlurm();
 *
 * An unload handler kills what is left and removes the namespace and the
 * temp dir if the test process ends first.
 */
import { pidsInNamespace } from "./proc.ts";
import { type Result, runCommand } from "./shoal.ts";
import { type TestUser, userArgv } from "./users.ts";

/** Off-default ports (Slurm's are 6817 and 6818); the namespace is private anyway. */
const CTLD_PORT = 16817;
const SLURMD_PORT = 16818;
/** How long the daemons get to be ready, and to end on TERM. */
const START_MS = 20_000;
const STOP_MS = 5_000;

export interface TestSlurm {
  /** The temp dir: slurm.conf, munge/, state/, spool/, log/. */
  dir: string;
  /** slurm.conf's path (SLURM_CONF). */
  conf: string;
  /** The node's name (this host's). */
  node: string;
  /** SlurmdSpoolDir, where Slurm's PMIx plugin makes its per-step directories. */
  spool: string;
  /** /run/netns/NAME. */
  netns: string;
  /** Milliseconds from starting munged to the node being idle. */
  startMs: number;
  /** The argv that runs `cmd ARGS` in the cluster's network, as `user` (root when undefined). */
  argv(
    user: TestUser | undefined,
    cmd: string,
    args: string[],
    env?: Record<string, string>,
  ): string[];
  /** Runs `cmd ARGS` (srun, sbatch, squeue, ...) as `user` and returns its output. */
  run(
    user: TestUser | undefined,
    cmd: string,
    args: string[],
    env?: Record<string, string>,
  ): Promise<Result>;
  /** The live processes in the cluster's network namespace (daemons, steps, tasks): "PID ARGS". */
  processes(): string[];
  /** The same without Slurm's and munge's daemons: what jobs left (slurmstepd included). */
  jobProcesses(): string[];
  /** Ends everything in the namespace (TERM, then KILL), removes it and the temp dir; idempotent. */
  stop(): Promise<{ stopMs: number }>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Clusters not yet stopped, for the exit-time safety net. */
const live = new Map<string, { dir: string; netnsName: string }>();
let unloadHandlerInstalled = false;

function installUnloadHandler(): void {
  if (unloadHandlerInstalled) return;
  unloadHandlerInstalled = true;
  globalThis.addEventListener("unload", () => {
    for (const { dir, netnsName } of live.values()) {
      for (const pid of pidsInNetns(`/run/netns/${netnsName}`)) signal(pid, "SIGKILL");
      new Deno.Command("ip", { args: ["netns", "delete", netnsName] }).outputSync();
      new Deno.Command("rm", { args: ["-rf", dir] }).outputSync();
    }
  });
}

/** The live (not zombie) processes whose network namespace is the one bound at `netns`. */
function pidsInNetns(netns: string): number[] {
  let ns: string;
  try {
    ns = `net:[${Deno.statSync(netns).ino}]`;
  } catch {
    return [];
  }
  return pidsInNamespace("net", ns);
}

function describe(pid: number): string {
  try {
    const args = Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0").join(" ").trim();
    return `${pid} ${args}`;
  } catch {
    return `${pid} (gone)`;
  }
}

/** The daemons' command names (slurmscriptd is slurmctld's helper). */
const DAEMONS = new Set(["munged", "slurmctld", "slurmd", "slurmscriptd"]);

function comm(pid: number): string {
  try {
    return Deno.readTextFileSync(`/proc/${pid}/comm`).trim();
  } catch {
    return "";
  }
}

function signal(pid: number, sig: Deno.Signal): void {
  try {
    Deno.kill(pid, sig);
  } catch { /* already gone */ }
}

async function must(cmd: string, args: string[]): Promise<string> {
  const r = await runCommand(cmd, args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(" ")} failed: ${r.stderr.trim()}`);
  return r.stdout;
}

/** Waits up to `ms` for `check`; false if it never held. */
async function until(check: () => boolean | Promise<boolean>, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return await check();
}

function slurmConf(dir: string, node: string, nodeLine: string): string {
  return [
    "ClusterName=shoaltest",
    `SlurmctldHost=${node}(127.0.0.1)`,
    `SlurmctldPort=${CTLD_PORT}`,
    `SlurmdPort=${SLURMD_PORT}`,
    "SlurmUser=root",
    "SlurmdUser=root",
    "AuthType=auth/munge",
    `AuthInfo=socket=${dir}/munge/munge.socket`,
    "CredType=cred/munge",
    `StateSaveLocation=${dir}/state`,
    `SlurmdSpoolDir=${dir}/spool`,
    `SlurmctldPidFile=${dir}/slurmctld.pid`,
    `SlurmdPidFile=${dir}/slurmd.pid`,
    `SlurmctldLogFile=${dir}/log/slurmctld.log`,
    `SlurmdLogFile=${dir}/log/slurmd.log`,
    // No cgroup tracking: the test machine's cgroups are not Slurm's to manage.
    "ProctrackType=proctrack/linuxproc",
    "TaskPlugin=task/affinity",
    "SelectType=select/cons_tres",
    "SelectTypeParameters=CR_Core",
    "MpiDefault=pmi2",
    "ReturnToService=2",
    "JobAcctGatherType=jobacct_gather/none",
    // A killed step's tasks get KILL this soon after TERM (Slurm's default is 30 s).
    "KillWait=2",
    `${nodeLine} NodeAddr=127.0.0.1 State=UNKNOWN`,
    `PartitionName=test Nodes=${node} Default=YES MaxTime=INFINITE State=UP`,
    "",
  ].join("\n");
}

/** Starts munged, slurmctld and slurmd and waits (bounded) until the node takes jobs. */
export async function startSlurm(): Promise<TestSlurm> {
  const started = performance.now();
  const dir = await Deno.makeTempDir({ prefix: "shoal-slurm-" });
  // Users read slurm.conf and reach the munge socket and the spool's PMIx directories.
  await Deno.chmod(dir, 0o755);
  const netnsName = `shoal-slurm-${crypto.randomUUID().slice(0, 8)}`;
  const netns = `/run/netns/${netnsName}`;
  installUnloadHandler();
  live.set(netnsName, { dir, netnsName });
  const conf = `${dir}/slurm.conf`;
  const daemons: Deno.ChildProcess[] = [];
  const enter = (cmd: string, args: string[]) =>
    new Deno.Command("nsenter", {
      args: [`--net=${netns}`, "--", "setpriv", "--pdeathsig", "KILL", "--", cmd, ...args],
      env: { SLURM_CONF: conf },
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();

  let stopped: Promise<{ stopMs: number }> | undefined;
  const stop = () => stopped ??= stopAll();
  async function stopAll(): Promise<{ stopMs: number }> {
    const t0 = performance.now();
    // The daemons first, so that none starts anything more; then whatever they left.
    for (const d of daemons) signal(d.pid, "SIGTERM");
    await until(() => pidsInNetns(netns).length === 0, STOP_MS);
    for (const pid of pidsInNetns(netns)) signal(pid, "SIGKILL");
    await Promise.all(daemons.map((d) => d.status));
    const gone = await until(() => pidsInNetns(netns).length === 0, STOP_MS);
    const left = pidsInNetns(netns).map(describe);
    await runCommand("ip", ["netns", "delete", netnsName]);
    await Deno.remove(dir, { recursive: true });
    live.delete(netnsName);
    if (!gone) throw new Error(`processes left in the test cluster after KILL: ${left.join("; ")}`);
    return { stopMs: performance.now() - t0 };
  }

  try {
    await must("ip", ["netns", "add", netnsName]);
    await must("ip", ["-n", netnsName, "link", "set", "lo", "up"]);
    await must("ip", ["-n", netnsName, "link", "add", "shoal0", "type", "veth", "peer", "shoal1"]);
    await must("ip", ["-n", netnsName, "addr", "add", "192.0.2.1/32", "dev", "shoal0"]);
    await must("ip", ["-n", netnsName, "link", "set", "shoal0", "up"]);
    await must("ip", ["-n", netnsName, "link", "set", "shoal1", "up"]);
    for (const sub of ["state", "log"]) await Deno.mkdir(`${dir}/${sub}`, { mode: 0o700 });
    for (const sub of ["munge", "spool"]) await Deno.mkdir(`${dir}/${sub}`, { mode: 0o755 });
    await must("mungekey", ["--create", `--keyfile=${dir}/munge.key`]);
    await Deno.chmod(`${dir}/munge.key`, 0o600);
    // `slurmd -C`: this node's CPUs, sockets, cores and memory, as a NodeName line.
    const nodeLine = (await must("slurmd", ["-C"])).split("\n")[0]!.trim();
    const node = nodeLine.match(/^NodeName=(\S+)/)?.[1];
    if (node === undefined) throw new Error(`slurmd -C printed no NodeName: ${nodeLine}`);
    await Deno.writeTextFile(conf, slurmConf(dir, node, nodeLine), { mode: 0o644 });

    daemons.push(enter("munged", [
      "--foreground",
      "--force",
      `--socket=${dir}/munge/munge.socket`,
      `--key-file=${dir}/munge.key`,
      `--pid-file=${dir}/munged.pid`,
      `--log-file=${dir}/log/munged.log`,
      `--seed-file=${dir}/munged.seed`,
    ]));
    const socketUp = await until(async () => {
      try {
        return (await Deno.stat(`${dir}/munge/munge.socket`)).isSocket === true;
      } catch {
        return false;
      }
    }, START_MS);
    if (!socketUp) throw new Error(`munged made no socket in ${START_MS} ms (${dir}/log)`);
    daemons.push(enter("slurmctld", ["-D", "-i"]));
    daemons.push(enter("slurmd", ["-D"]));

    const slurm: TestSlurm = {
      dir,
      conf,
      node,
      spool: `${dir}/spool`,
      netns,
      startMs: 0,
      argv: (user, cmd, args, env = {}) => {
        const full = { SLURM_CONF: conf, ...env };
        const inner = user === undefined
          ? ["env", ...Object.entries(full).map(([k, v]) => `${k}=${v}`), cmd, ...args]
          : userArgv(user, cmd, args, full);
        return ["nsenter", `--net=${netns}`, "--", ...inner];
      },
      run: (user, cmd, args, env) => {
        const [first, ...rest] = slurm.argv(user, cmd, args, env);
        return runCommand(first!, rest, { cwd: user?.home ?? dir });
      },
      processes: () => pidsInNetns(netns).map(describe),
      jobProcesses: () => pidsInNetns(netns).filter((pid) => !DAEMONS.has(comm(pid))).map(describe),
      stop,
      [Symbol.asyncDispose]: async () => {
        await stop();
      },
    };
    const ready = await until(async () => {
      const r = await slurm.run(undefined, "sinfo", ["--noheader", "--Node", "--format=%t"]);
      return r.code === 0 && r.stdout.trim() === "idle";
    }, START_MS);
    if (!ready) {
      const log = await Deno.readTextFile(`${dir}/log/slurmd.log`).catch(() => "");
      throw new Error(
        `the test node was not idle after ${START_MS} ms; slurmd.log ends: ${log.slice(-600)}`,
      );
    }
    slurm.startMs = performance.now() - started;
    return slurm;
  } catch (err) {
    await stop().catch(() => {});
    throw err;
  }
}
