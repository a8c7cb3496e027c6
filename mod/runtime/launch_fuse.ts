/**
 * Path B, no helper: the image is mounted with squashfuse, under a tmpfs
 * overlay, in a user namespace U of the user's own, and runc runs there.
 *
 * Processes (all the user's; nothing privileged but newuidmap/newgidmap):
 *
 *   shoal ─┬ guard: `sh <prefix>/libexec/shoal/shoal-guard ...` in the host's
 *          │   namespaces, a session of its own, running  holder | watcher
 *          │   ├ holder: `unshare --user --mount`, then sh: says its pid and
 *          │   │   passes shoal's lines (the guard's stdin) on to the watcher
 *          │   └ watcher (subshell): newuidmap ‖ newgidmap on the holder, then
 *          │       └ mounter: nsenter into the holder's namespaces as root of
 *          │           U, `sh shoal-guard mount`: mounts the image (FUSE), a
 *          │           tmpfs and the overlay on <bundle>/rootfs, tells shoal
 *          │           the holder's pid, and waits for
 *          │           └ squashfuse_ll -f, serving the image
 *          └ chain: `nsenter` into the holder's namespaces as their root,
 *              exec'ing runc run (the container stays in U)
 *
 * Start-up: shoal claims the bundle, spawns the guard and writes the bundle
 * meanwhile (run.ts), then reads one line, the holder's pid once U has its
 * mapping and the image is mounted (or why not), and spawns the chain.
 *
 * The FUSE mount: the mounter opens /dev/fuse (the kernel wants the
 * connection opened in the mount's user namespace), mounts it with mount(8),
 * and hands the descriptor to `squashfuse_ll -f IMAGE /dev/fd/5` (libfuse 3
 * serves an already mounted connection). So the mount exists when mount(8)
 * returns, with no wait for a daemon, and squashfuse stays in the
 * foreground as the mounter's child: it is never reparented to init, where a
 * killed one would stay a zombie until init reaps it.
 *
 * U gets the container's own mapping (keep-id or --root, idmap.ts) through
 * newuidmap/newgidmap, so squashfuse, which reports the uids stored in the
 * image as ids of U (the mount's namespace), shows image files with their
 * owners in both modes; runc is root of U (runc 1.1 as a plain user cannot
 * do keep-id, see spec.ts) and leaves the container in U ("inherit"). With
 * the default identity U denies setgroups(2), so that the container keeps
 * the caller's supplementary groups (IdMaps.setgroups).
 *
 * Why a separate guard instead of one script that waits for runc: a script
 * that backgrounds runc to stay responsive hands it /dev/null as stdin and
 * SIGINT ignored, and one that waits in the foreground handles no signal until
 * runc ends. So shoal itself spawns the chain (stdio, terminal and extra fds
 * untouched) and signals runc directly (the user owns U, which lets them
 * signal its processes whatever their ids); the guard ignores those signals.
 *
 * Cleanup: the guard's stdin is a pipe only shoal holds. A line "end" asks
 * for the container's processes to be killed (its main process has exited
 * while others hold its output, or a stop signal's grace period is over):
 * those of U in a mount namespace other than the holder's, which runc made
 * for the container; runc, its hooks and squashfuse stay, and runc then
 * reports the status. The pipe's end comes when shoal is done with the run
 * (finish(), which waits for the guard to exit) or dies, even by SIGKILL;
 * the watcher then kills every process whose user namespace is U, found with
 * `test -ef` against a descriptor of U it opened while the holder ran, so
 * the user's other processes are never touched, unlike `kill -1`: the
 * container and anything it left running (--pid=host has no pid namespace
 * to end them), runc, squashfuse (the mounter reaps it and ends). It uses
 * the shell's builtins alone, looks at /proc again right after the kill,
 * sleeps only when a process takes long to die, and sweeps until it finds
 * none. The holder goes last: with it the mount namespace ends, and every
 * mount with it (nothing was ever mounted in the host's), while the guard
 * waits for it. If shoal dies before the holder has its mapping, the holder
 * ends at once and nothing else is in U. A process the container moved into
 * a user namespace of its own is not found this way; runc's and shoal's
 * processes never do that.
 */
import { join } from "../path.ts";
import { BUNDLE } from "./rundir.ts";
import type { IdMapping } from "./idmap.ts";

/** newuidmap's argument list for a mapping: "ctr host size ..." (one word each). */
export function mapArgument(mappings: IdMapping[]): string {
  return mappings.map((m) => `${m.containerID} ${m.hostID} ${m.size}`).join(" ");
}

/** The container's id mappings, and the programs that give them to the user namespace. */
export interface IdMaps {
  uidMappings: IdMapping[];
  gidMappings: IdMapping[];
  /** The setuid newuidmap and newgidmap; by default as found on PATH (enough for root). */
  newuidmap?: string;
  newgidmap?: string;
  /**
   * Whether setgroups(2) works in the namespace. "deny" keeps the caller's
   * supplementary groups in the container: runc, as root of the namespace,
   * would otherwise set the container user's groups to the ones it can map,
   * dropping the host's (and with them a group's denial: a file `0604
   * root:G` would become readable to a member of G). newgidmap leaves a
   * "deny" written before it in place. `--root` needs "allow": apt-get and
   * other tools that drop privileges call setgroups.
   */
  setgroups: "allow" | "deny";
}

/** How the chain runs runc in U. */
export interface FuseLaunch {
  bundle: string;
  runc: string;
  id: string;
  /** Options for `runc run` (e.g. --preserve-fds N). */
  runcOptions: string[];
  /** Whether the user is root of U already (rootIsUser). */
  rootIsUser: boolean;
}

/** What the guard mounts, and how it enters U to do it. */
export interface GuardMount {
  bundle: string;
  image: string;
  /** `--writable-tmpfs-size` in bytes. */
  tmpfsSize?: number;
  squashfuse: string;
  /** Whether the user is root of U already (rootIsUser). */
  rootIsUser: boolean;
}

/** The guard's argv (libexec/shoal/shoal-guard); without `mount` it only makes U. */
export function guardArgv(script: string, m: IdMaps, mount?: GuardMount): string[] {
  return [
    "sh",
    script,
    m.newuidmap ?? "newuidmap",
    mapArgument(m.uidMappings),
    m.newgidmap ?? "newgidmap",
    mapArgument(m.gidMappings),
    m.setgroups,
    ...(mount === undefined ? [] : [
      mount.rootIsUser ? "keep" : "root",
      mount.bundle,
      mount.image,
      tmpfsSize(mount.tmpfsSize),
      mount.squashfuse,
    ]),
  ];
}

function tmpfsSize(bytes: number | undefined): string {
  return bytes === undefined ? "" : `${Math.ceil(bytes / 1024)}k`;
}

/** Whether root of U is the user (--root, or root itself): then nsenter keeps their ids. */
export function rootIsUser(m: IdMaps, uid: number, gid: number): boolean {
  const own = (map: IdMapping[], id: number) =>
    map.some((e) => e.containerID === 0 && e.hostID === id && e.size >= 1);
  return own(m.uidMappings, uid) && own(m.gidMappings, gid);
}

/** Where runc keeps its state on path B: in the holder's mount namespace only. */
export function fuseStateDir(bundle: string): string {
  return join(bundle, BUNDLE.mountArea, "state");
}

/**
 * The start of an argv that enters the holder `holderPid` made by the guard
 * as root of its user namespace, with the caller's supplementary groups.
 * When that root is the user (--root, or root itself) the user already is
 * it; otherwise nsenter sets uid and gid 0, and its setgroups(2) call, which
 * --preserve-credentials lets fail, fails on the namespace's "deny".
 */
export function enterArgv(holderPid: number, asRoot: boolean): string[] {
  return [
    "nsenter",
    `--target=${holderPid}`,
    "--user",
    "--mount",
    "--preserve-credentials",
    ...(asRoot ? [] : ["--setuid=0", "--setgid=0"]),
    "--",
  ];
}

/** The chain's argv: runc run in the holder `holderPid` made by the guard (enterArgv). */
export function chainArgv(l: FuseLaunch, holderPid: number): string[] {
  return [
    ...enterArgv(holderPid, l.rootIsUser),
    l.runc,
    "--log",
    join(l.bundle, BUNDLE.runcLog),
    "--log-format",
    "json",
    "--root",
    fuseStateDir(l.bundle),
    "run",
    ...l.runcOptions,
    "--bundle",
    l.bundle,
    l.id,
  ];
}
