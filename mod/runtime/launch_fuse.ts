/**
 * Path B, no helper: the image is mounted with squashfuse, under a tmpfs
 * overlay, in a user namespace U of the user's own, and runc runs there.
 *
 * Processes (all the user's; nothing privileged but newuidmap/newgidmap):
 *
 *   shoal ─┬ guard: sh in the host's namespaces, a session of its own,
 *          │   running the pipeline  holder | watcher
 *          │   ├ holder: `unshare --user --mount`, then sh: says its pid,
 *          │   │   reads shoal's pipe (the guard's stdin) to its end
 *          │   └ watcher (subshell): newuidmap ‖ newgidmap on the holder,
 *          │       tells shoal the pid, and empties U when the holder says so
 *          └ chain: `nsenter` into the holder's namespaces as their root
 *              └ sh: squashfuse_ll onto <bundle>/rootfs while it mounts a
 *                 tmpfs, the overlay over the image, then
 *                 └ exec runc run (the container stays in U)
 *
 * Start-up: shoal spawns the guard while it writes the bundle (run.ts), then
 * reads one line, the holder's pid once U has its mapping (or why not), and
 * spawns the chain. Nothing else is exec'd: no fifo, no readlink, the two
 * id maps at the same time, the image mounted while the tmpfs is.
 *
 * U gets the container's own mapping (keep-id or --root, idmap.ts) through
 * newuidmap/newgidmap, so squashfuse, which reports the uids stored in the
 * image as ids of U, shows image files with their owners in both modes; runc
 * is root of U (runc 1.1 as a plain user cannot do keep-id, see spec.ts) and
 * leaves the container in U ("inherit"). With the default identity U denies
 * setgroups(2), so that the container keeps the caller's supplementary groups
 * (IdMaps.setgroups).
 *
 * Why a separate guard instead of one script that waits for runc: a script
 * that backgrounds runc to stay responsive hands it /dev/null as stdin and
 * SIGINT ignored, and one that waits in the foreground handles no signal until
 * runc ends. So shoal itself spawns the chain (stdio, terminal and extra fds
 * untouched) and signals runc directly (the user owns U, which lets them
 * signal its processes whatever their ids); the guard ignores those signals.
 *
 * Cleanup: the guard's stdin is a pipe only shoal holds. It ends when shoal
 * is done with the run (finish(), which waits for the guard to exit) or dies,
 * even by SIGKILL; the holder then tells the watcher and stops itself. The
 * watcher kills every process whose user namespace is U, found with `test
 * -ef` against a descriptor of U it opened while the holder ran, so the
 * user's other processes are never touched, unlike `kill -1`: the container
 * and anything it left running (--pid=host has no pid namespace to end them),
 * squashfuse, runc. It uses the shell's builtins alone, looks at /proc again
 * right after the kill, sleeps only when a process takes long to die, and
 * sweeps until it finds none. The holder goes last: with it the mount
 * namespace ends, and every mount with it (nothing was ever mounted in the
 * host's), while the guard waits for it. If shoal dies before the holder has
 * its mapping, the holder ends at once and nothing else is in U. A process
 * the container moved into a user namespace of its own is not found this way;
 * runc's and shoal's processes never do that.
 */
import { BUNDLE } from "./rundir.ts";
import type { IdMapping } from "./idmap.ts";

/** How many times the guard looks at a killed process before it sleeps between looks. */
const POLLS = 500;

/**
 * Runs in the host's namespaces as the user: $1 newuidmap, $2 uid map, $3
 * newgidmap, $4 gid map (mapArgument), $5 "allow" or "deny" (IdMaps.setgroups).
 * Says the holder's pid, or why there is none, in its first line; shoal's end
 * is the end of its stdin.
 */
export const GUARD_SCRIPT = `
# shellcheck disable=SC3013 # test -ef: dash, busybox sh and bash all have it
set -u
uidmap=$1 umap=$2 gidmap=$3 gmap=$4 setgroups=$5
# The run's signals are shoal's to forward; the guard only waits for shoal to go.
trap '' INT QUIT HUP TERM USR1 USR2 PIPE
# The shell would tell of a holder killed by SIGKILL on stderr: the user's stderr is fd 4.
exec 4>&2 2>/dev/null
# Whether process $1 still runs: a killed one stays in U as a zombie until reaped, and a
# zombie has no mount namespace left. One stat: dash reads /proc/PID/stat a byte per
# read(2), ~3 ms for every look.
alive() { [ -e "/proc/$1/ns/mnt" ]; }
# Kills every process whose user namespace is U (fd 3), the holder last: the mount
# namespace ends with its last process, and the guard, which waits for the holder,
# then waits for that without polling.
sweep() {
  i=0
  while [ $i -lt 100 ]; do
    pids=
    for f in /proc/[0-9]*/ns/user; do
      [ "$f" -ef /proc/self/fd/3 ] || continue
      p=\${f#/proc/}
      p=\${p%%/*}
      [ "$p" = "$holder" ] || ! alive "$p" || pids="$pids $p"
    done
    [ -n "$pids" ] || break
    # shellcheck disable=SC2086 # one argument per pid
    kill -KILL $pids
    # Dying takes a moment: look again soon, and sleep only when it takes longer.
    slow=
    for p in $pids; do
      n=0
      while alive "$p" && [ $n -lt ${POLLS} ]; do n=$((n + 1)); done
      [ $n -lt ${POLLS} ] || slow=1
    done
    [ -z "$slow" ] || sleep 0.01 || sleep 1
    i=$((i + 1))
  done
  [ -z "$holder" ] || kill -KILL "$holder"
  [ -z "$pids" ] && return 0
  echo "shoal: warning: processes of the container survived:$pids" >&4
  return 1
}
# The holder reads shoal's pipe; at its end (shoal is done or gone) it says so to the
# watcher and stops, to be killed last. Its output ending without that: it is gone.
unshare --user --mount --propagation private --setgroups "$setgroups" -- \\
  sh -c 'echo $$; read -r _; echo; kill -STOP $$' 2>&1 | {
  read -r holder || exit 1
  case $holder in
    '' | *[!0-9]*) echo "$holder"; exit 1 ;;
  esac
  # Never sweep the host's namespace.
  if ! command exec 3<"/proc/$holder/ns/user" || [ /proc/self/fd/3 -ef /proc/self/ns/user ]; then
    echo "unshare made no user namespace"
    kill -KILL "$holder"
    exit 1
  fi
  # shellcheck disable=SC2086 # a map is one argument per number (mapArgument)
  if err=$(
    "$uidmap" "$holder" $umap 2>&1 &
    "$gidmap" "$holder" $gmap 2>&1 || { wait; exit 1; }
    wait $!
  ); then
    echo "$holder"
    read -r _ || holder=
  else
    echo "\${err:-$uidmap or $gidmap failed}"
  fi
  sweep
}
`;

/**
 * Runs as root of U, entered by nsenter: $1 bundle, $2 image, $3 tmpfs size
 * ("" for the kernel's default), $4 squashfuse, $5 runc, $6 container id, then
 * options for \`runc run\`.
 */
export const MAIN_SCRIPT = `
set -eu
d=$1 image=$2 size=$3 squashfuse=$4 runc=$5 id=$6
shift 6
umask 022
m=$d/${BUNDLE.mountArea}
r=$d/${BUNDLE.rootfs}
# The image is mounted on rootfs itself, and the overlay then covers it.
"$squashfuse" -o allow_other "$image" "$r" &
mount -t tmpfs -o "mode=0700\${size:+,size=$size}" shoal "$m"
mkdir "$m/upper" "$m/work"
wait $!
# userxattr: overlay's own xattrs under user.*, which a user namespace may set; without
# them it refuses to rename directories (EXDEV), and dpkg fails.
# nosuid: the container's own root filesystem runs nothing with another's privileges.
mount -t overlay -o "nosuid,userxattr,lowerdir=$r,upperdir=$m/upper,workdir=$m/work" overlay "$r"
exec "$runc" --log "$d/${BUNDLE.runcLog}" --log-format json --root "$m/state" run "$@" --bundle "$d" "$id"
`;

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

export interface FuseLaunch extends IdMaps {
  bundle: string;
  image: string;
  /** `--writable-tmpfs-size` in bytes. */
  tmpfsSize?: number;
  squashfuse: string;
  runc: string;
  id: string;
  /** The caller's uid and gid (the mappings say what they are in the container). */
  uid: number;
  gid: number;
  /** Options for `runc run` (e.g. --preserve-fds N). */
  runcOptions: string[];
}

/** The guard's argv (see GUARD_SCRIPT). */
export function guardArgv(m: IdMaps): string[] {
  return [
    "sh",
    "-c",
    GUARD_SCRIPT,
    "shoal-guard",
    m.newuidmap ?? "newuidmap",
    mapArgument(m.uidMappings),
    m.newgidmap ?? "newgidmap",
    mapArgument(m.gidMappings),
    m.setgroups,
  ];
}

/**
 * The chain's argv, entering the holder `holderPid` made by the guard as root
 * of its user namespace, with the caller's supplementary groups. When that
 * root is the user (--root, or root itself) the user already is it; otherwise
 * nsenter sets uid and gid 0, and its setgroups(2) call, which
 * --preserve-credentials lets fail, fails on the namespace's "deny".
 */
export function chainArgv(l: FuseLaunch, holderPid: number): string[] {
  const own = (m: IdMapping[], id: number) =>
    m.some((e) => e.containerID === 0 && e.hostID === id && e.size >= 1);
  const rootIsUser = own(l.uidMappings, l.uid) && own(l.gidMappings, l.gid);
  return [
    "nsenter",
    `--target=${holderPid}`,
    "--user",
    "--mount",
    "--preserve-credentials",
    ...(rootIsUser ? [] : ["--setuid=0", "--setgid=0"]),
    "--",
    "sh",
    "-c",
    MAIN_SCRIPT,
    "shoal-run",
    l.bundle,
    l.image,
    l.tmpfsSize === undefined ? "" : `${Math.ceil(l.tmpfsSize / 1024)}k`,
    l.squashfuse,
    l.runc,
    l.id,
    ...l.runcOptions,
  ];
}
