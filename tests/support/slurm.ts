/**
 * A private Slurm for one test file: Debian's munged, slurmctld and slurmd
 * (Slurm 22.05), one node named after this host, with their key, socket,
 * configuration, state, spool and logs in a temp dir of their own.
 * `startSlurm({ nodes: 2 })` adds a second node (see startSecondNode).
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
 * An unload handler kills what is left and removes the namespaces and the
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
/** The nodes' addresses with two nodes (TEST-NET-1: never routed anywhere). */
const NODE_ADDRS = ["192.0.2.1", "192.0.2.2"] as const;

export interface TestSlurm {
  /** The temp dir: slurm.conf, munge/, state/, spool/, log/. */
  dir: string;
  /** slurm.conf's path (SLURM_CONF). */
  conf: string;
  /** The node's name (this host's). */
  node: string;
  /** SlurmdSpoolDir, where Slurm's PMIx plugin makes its per-step directories. */
  spool: string;
  /** Every node's name, the first node's (this host's) first. */
  nodes: string[];
  /** /run/netns/NAME: the first node's, where the controller runs and users' commands start. */
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
  /** The live processes in the cluster's network namespaces (daemons, steps, tasks): "PID ARGS". */
  processes(): string[];
  /** The same without Slurm's and munge's daemons: what jobs left (slurmstepd included). */
  jobProcesses(): string[];
  /** Ends everything in the namespaces (TERM, then KILL), removes them and the temp dir; idempotent. */
  stop(): Promise<{ stopMs: number }>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Clusters not yet stopped, for the exit-time safety net. */
const live = new Map<string, { dir: string; netnsNames: string[] }>();
let unloadHandlerInstalled = false;

function installUnloadHandler(): void {
  if (unloadHandlerInstalled) return;
  unloadHandlerInstalled = true;
  globalThis.addEventListener("unload", () => {
    for (const { dir, netnsNames } of live.values()) {
      for (const name of netnsNames) {
        for (const pid of pidsInNetns(`/run/netns/${name}`)) signal(pid, "SIGKILL");
        new Deno.Command("ip", { args: ["netns", "delete", name] }).outputSync();
      }
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

/**
 * The cluster's nodes: `NodeName=... NodeAddr=...` lines, the controller's
 * address, and the suffix that gives each slurmd its own pid file, log and
 * spool (Slurm replaces %n with the node's name; none with one node).
 */
interface Layout {
  nodeLines: string[];
  names: string[];
  ctldAddr: string;
  perNode: string;
}

function slurmConf(dir: string, { nodeLines, names, ctldAddr, perNode }: Layout): string {
  return [
    "ClusterName=shoaltest",
    `SlurmctldHost=${names[0]}(${ctldAddr})`,
    `SlurmctldPort=${CTLD_PORT}`,
    `SlurmdPort=${SLURMD_PORT}`,
    "SlurmUser=root",
    "SlurmdUser=root",
    "AuthType=auth/munge",
    `AuthInfo=socket=${dir}/munge/munge.socket`,
    "CredType=cred/munge",
    `StateSaveLocation=${dir}/state`,
    `SlurmdSpoolDir=${dir}/spool${perNode}`,
    `SlurmctldPidFile=${dir}/slurmctld.pid`,
    `SlurmdPidFile=${dir}/slurmd${perNode}.pid`,
    `SlurmctldLogFile=${dir}/log/slurmctld.log`,
    `SlurmdLogFile=${dir}/log/slurmd${perNode}.log`,
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
    ...nodeLines.map((line) => `${line} State=UNKNOWN`),
    `PartitionName=test Nodes=${names.join(",")} Default=YES MaxTime=INFINITE State=UP`,
    "",
  ].join("\n");
}

/**
 * One node: its NodeAddr is loopback, and the veth pair Slurm needs (see
 * above) has both ends in the node's namespace. Two nodes: the pair joins
 * the two namespaces, 192.0.2.1 and .2 on a /24 and no other route; the
 * controller listens at .1 so that the second node reaches it.
 */
function layout(nodeLine: string, node: string, nodes: 1 | 2): Layout {
  if (nodes === 1) {
    return {
      nodeLines: [`${nodeLine} NodeAddr=127.0.0.1`],
      names: [node],
      ctldAddr: "127.0.0.1",
      perNode: "",
    };
  }
  const second = `${node}-2`;
  return {
    nodeLines: [
      `${nodeLine} NodeAddr=${NODE_ADDRS[0]}`,
      `${nodeLine.replace(/^NodeName=\S+/, `NodeName=${second}`)} NodeAddr=${NODE_ADDRS[1]}`,
    ],
    names: [node, second],
    ctldAddr: NODE_ADDRS[0],
    perNode: "-%n",
  };
}

/**
 * Starts munged, slurmctld and slurmd and waits (bounded) until every node
 * takes jobs. With `nodes: 2`, a second slurmd (`slurmd -N NAME`) runs in a
 * network and UTS namespace of its own, named NAME, joined to the first by
 * the veth pair; it shares munged's socket by path.
 */
export async function startSlurm({ nodes = 1 }: { nodes?: 1 | 2 } = {}): Promise<TestSlurm> {
  const started = performance.now();
  const dir = await Deno.makeTempDir({ prefix: "shoal-slurm-" });
  // Users read slurm.conf and reach the munge socket and the spool's PMIx directories.
  await Deno.chmod(dir, 0o755);
  const id = crypto.randomUUID().slice(0, 8);
  const netnsNames = Array.from(
    { length: nodes },
    (_, i) => `shoal-slurm-${id}${i === 0 ? "" : `-${i + 1}`}`,
  );
  const netnses = netnsNames.map((name) => `/run/netns/${name}`);
  const netns = netnses[0]!;
  installUnloadHandler();
  live.set(id, { dir, netnsNames });
  const conf = `${dir}/slurm.conf`;
  const daemons: Deno.ChildProcess[] = [];
  const enter = (cmd: string, args: string[], at = netns, hostname?: string) => {
    const daemon = ["setpriv", "--pdeathsig", "KILL", "--", cmd, ...args];
    // A node's own hostname, as a real node has, seen by its steps and their containers.
    const uts = hostname === undefined
      ? daemon
      : ["unshare", "--uts", "--", "sh", "-c", 'hostname "$0" && exec "$@"', hostname, ...daemon];
    return new Deno.Command("nsenter", {
      args: [`--net=${at}`, "--", ...uts],
      env: { SLURM_CONF: conf },
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
  };
  const allPids = () => netnses.flatMap(pidsInNetns);

  let stopped: Promise<{ stopMs: number }> | undefined;
  const stop = () => stopped ??= stopAll();
  async function stopAll(): Promise<{ stopMs: number }> {
    const t0 = performance.now();
    // The daemons first, so that none starts anything more; then whatever they left.
    for (const d of daemons) signal(d.pid, "SIGTERM");
    await until(() => allPids().length === 0, STOP_MS);
    for (const pid of allPids()) signal(pid, "SIGKILL");
    await Promise.all(daemons.map((d) => d.status));
    const gone = await until(() => allPids().length === 0, STOP_MS);
    const left = allPids().map(describe);
    for (const name of netnsNames) await runCommand("ip", ["netns", "delete", name]);
    await Deno.remove(dir, { recursive: true });
    live.delete(id);
    if (!gone) throw new Error(`processes left in the test cluster after KILL: ${left.join("; ")}`);
    return { stopMs: performance.now() - t0 };
  }

  try {
    const [first, second] = netnsNames as [string, string | undefined];
    for (const name of netnsNames) {
      await must("ip", ["netns", "add", name]);
      await must("ip", ["-n", name, "link", "set", "lo", "up"]);
    }
    await must("ip", ["-n", first, "link", "add", "shoal0", "type", "veth", "peer", "shoal1"]);
    if (second === undefined) {
      await must("ip", ["-n", first, "addr", "add", "192.0.2.1/32", "dev", "shoal0"]);
    } else {
      await must("ip", ["-n", first, "link", "set", "shoal1", "netns", second]);
      await must("ip", ["-n", first, "addr", "add", `${NODE_ADDRS[0]}/24`, "dev", "shoal0"]);
      await must("ip", ["-n", second, "addr", "add", `${NODE_ADDRS[1]}/24`, "dev", "shoal1"]);
    }
    await must("ip", ["-n", first, "link", "set", "shoal0", "up"]);
    await must("ip", ["-n", second ?? first, "link", "set", "shoal1", "up"]);
    for (const sub of ["state", "log"]) await Deno.mkdir(`${dir}/${sub}`, { mode: 0o700 });
    await Deno.mkdir(`${dir}/munge`, { mode: 0o755 });
    await must("mungekey", ["--create", `--keyfile=${dir}/munge.key`]);
    await Deno.chmod(`${dir}/munge.key`, 0o600);
    // `slurmd -C`: this node's CPUs, sockets, cores and memory, as a NodeName line.
    const nodeLine = (await must("slurmd", ["-C"])).split("\n")[0]!.trim();
    const node = nodeLine.match(/^NodeName=(\S+)/)?.[1];
    if (node === undefined) throw new Error(`slurmd -C printed no NodeName: ${nodeLine}`);
    const cluster = layout(nodeLine, node, nodes);
    const perNode = (path: string, name: string) => path.replace("%n", name);
    for (const name of cluster.names) {
      await Deno.mkdir(perNode(`${dir}/spool${cluster.perNode}`, name), { mode: 0o755 });
    }
    await Deno.writeTextFile(conf, slurmConf(dir, cluster), { mode: 0o644 });

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
    if (second !== undefined) {
      const name = cluster.names[1]!;
      daemons.push(enter("slurmd", ["-D", "-N", name], netnses[1], name));
    }

    const slurm: TestSlurm = {
      dir,
      conf,
      node,
      nodes: cluster.names,
      spool: perNode(`${dir}/spool${cluster.perNode}`, node),
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
      processes: () => allPids().map(describe),
      jobProcesses: () => allPids().filter((pid) => !DAEMONS.has(comm(pid))).map(describe),
      stop,
      [Symbol.asyncDispose]: async () => {
        await stop();
      },
    };
    const ready = await until(async () => {
      const r = await slurm.run(undefined, "sinfo", ["--noheader", "--Node", "--format=%t"]);
      return r.code === 0 && r.stdout.trim() === Array(nodes).fill("idle").join("\n");
    }, START_MS);
    if (!ready) {
      const logs = await Promise.all(
        cluster.names.map((name) =>
          Deno.readTextFile(perNode(`${dir}/log/slurmd${cluster.perNode}.log`, name))
            .then((log) => `${name}: ${log.slice(-600)}`, () => `${name}: no log`)
        ),
      );
      throw new Error(
        `the test nodes were not idle after ${START_MS} ms; slurmd's logs end: ${logs.join(" | ")}`,
      );
    }
    slurm.startMs = performance.now() - started;
    return slurm;
  } catch (err) {
    await stop().catch(() => {});
    throw err;
  }
}

/**
 * A PMI-1 exchange over the descriptor, as MPICH's PMI client starts one:
 * init, a barrier both ranks must reach, finalize; the replies' commands
 * printed after the rank, the descriptor and its socket, then `more`.
 */
export function pmiExchange(more = ""): string {
  return 'pmi() { printf "cmd=$1\\n" >&"$PMI_FD"; read -r reply <&"$PMI_FD"; echo "${reply%% *}"; }; ' +
    'a=$(pmi "init pmi_version=1 pmi_subversion=1"); b=$(pmi barrier_in); c=$(pmi finalize); ' +
    `echo "rank $PMI_RANK of $PMI_SIZE fd $PMI_FD $(readlink /proc/self/fd/$PMI_FD) $a $b $c${more}"`;
}

/** Runs `outer` in the task, then execs `shoal run IMAGE sh -c INNER` ($0 shoal, $1 image, $2 inner). */
export function wrapped(outer: string, bin: string, image: string, inner: string): string[] {
  return ["sh", "-c", `${outer}; exec "$0" run "$1" sh -c "$2"`, bin, image, inner];
}

/**
 * Ends a job started in the background by name (scancel, whatever state it
 * is in) and its srun, and waits for srun: what a test does whichever way it
 * ended.
 */
export async function cancelJob(
  slurm: TestSlurm,
  user: TestUser,
  name: string,
  srun: Deno.ChildProcess,
): Promise<void> {
  await slurm.run(user, "scancel", [`--name=${name}`]);
  try {
    srun.kill("SIGKILL");
  } catch { /* ended */ }
  await srun.status;
}
