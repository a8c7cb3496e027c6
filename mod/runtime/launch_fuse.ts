/**
 * Path B, no helper: the image is mounted with squashfuse, under a tmpfs
 * overlay, in a user namespace of the user's own, and runc runs there.
 *
 * Processes (all the user's; nothing privileged but newuidmap):
 *
 *   shoal ── guard (sh, host namespaces)
 *        │     └ holder: `unshare --user --mount`, waits until entered
 *        └──── chain: `nsenter` into the holder's namespaces as their root
 *                └ sh: tmpfs, squashfuse_ll, overlay on <bundle>/rootfs
 *                   └ exec runc run (the container stays in this user namespace)
 *
 * The user namespace U gets the container's own mapping (keep-id or --root,
 * idmap.ts) through newuidmap/newgidmap, so squashfuse, which reports the
 * uids stored in the image as ids of U, shows image files with their owners
 * in both modes; runc is root of U (runc 1.1 as a plain user cannot do
 * keep-id, see spec.ts) and leaves the container in U ("inherit").
 *
 * Why a separate guard instead of one script that waits for runc: a script
 * that backgrounds runc to stay responsive hands it /dev/null as stdin and
 * SIGINT ignored, and one that waits in the foreground handles no signal until
 * runc ends. So shoal itself spawns the chain (stdio, terminal and extra fds
 * untouched) and signals runc directly (the user owns U, which lets them
 * signal its processes whatever their ids), and the guard only waits for its
 * stdin, a pipe from shoal, to close: when shoal is done with the run, or
 * dies, even by SIGKILL. It then kills every process whose user namespace is
 * U (compared by /proc/PID/ns/user inode, so the user's other processes are
 * never touched, unlike `kill -1`): the container and anything it left
 * running (--pid=host has no pid namespace to end them), squashfuse, runc.
 * With its last process the mount namespace ends, and every mount with it:
 * nothing was ever mounted in the host's. A process the container moved into
 * a user namespace of its own is not found this way; runc's and shoal's
 * processes never do that.
 */
import { BUNDLE } from "./rundir.ts";
import type { IdMapping } from "./idmap.ts";

/** Runs in the host's namespaces as the user: $1 bundle, $2 uid map, $3 gid map. */
export const GUARD_SCRIPT = `
set -u
d=$1 umap=$2 gmap=$3
# The run's signals are shoal's to forward; the guard only waits for shoal to go.
trap '' INT QUIT HUP TERM USR1 USR2
mkfifo "$d/.up" "$d/.down" || exit 1
unshare --user --mount --propagation private -- \\
  sh -c 'echo >"$1/.up"; read _ <"$1/.down"' holder "$d" </dev/null >/dev/null 2>&1 &
holder=$!
read _ <"$d/.up"
ns=$(readlink "/proc/$holder/ns/user") || exit 1
ns=\${ns#user:[}
ns=\${ns%]}
if ! { newuidmap "$holder" $umap && newgidmap "$holder" $gmap; }; then
  kill -KILL "$holder"
  exit 1
fi
echo "$holder"
read _ || :
i=0
while [ $i -lt 100 ]; do
  pids=
  for p in $(find /proc/[0-9]*/ns/user -maxdepth 0 -lname "user:\\[$ns\\]" 2>/dev/null | cut -d/ -f3); do
    # A killed process lingers as a zombie, still in the namespace, until reaped.
    read -r stat <"/proc/$p/stat" 2>/dev/null || continue
    stat=\${stat##*) }
    [ "\${stat%% *}" = Z ] || pids="$pids $p"
  done
  [ -z "$pids" ] && exit 0
  kill -KILL $pids 2>/dev/null
  sleep 0.01 2>/dev/null || sleep 1
  i=$((i + 1))
done
echo "shoal: warning: processes of the container survived: $pids" >&2
exit 1
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
echo >"$d/.down"
umask 022
m=$d/${BUNDLE.mountArea}
mount -t tmpfs -o "mode=0700\${size:+,size=$size}" shoal "$m"
mkdir "$m/lower" "$m/upper" "$m/work" "$m/state"
"$squashfuse" -o allow_other "$image" "$m/lower"
# userxattr: overlay's own xattrs under user.*, which a user namespace may set; without
# them it refuses to rename directories (EXDEV), and dpkg fails.
mount -t overlay -o "userxattr,lowerdir=$m/lower,upperdir=$m/upper,workdir=$m/work" overlay "$d/${BUNDLE.rootfs}"
exec "$runc" --log "$d/${BUNDLE.runcLog}" --log-format json --root "$m/state" run "$@" --bundle "$d" "$id"
`;

/** newuidmap's argument list for a mapping: "ctr host size ..." (one word each). */
export function mapArgument(mappings: IdMapping[]): string {
  return mappings.map((m) => `${m.containerID} ${m.hostID} ${m.size}`).join(" ");
}

export interface FuseLaunch {
  bundle: string;
  image: string;
  /** `--writable-tmpfs-size` in bytes. */
  tmpfsSize?: number;
  squashfuse: string;
  runc: string;
  id: string;
  /** The caller's uid and gid, and the container's mappings of them. */
  uid: number;
  gid: number;
  uidMappings: IdMapping[];
  gidMappings: IdMapping[];
  /** Options for `runc run` (e.g. --preserve-fds N). */
  runcOptions: string[];
}

/** The guard's argv (see GUARD_SCRIPT). */
export function guardArgv(l: FuseLaunch): string[] {
  return [
    "sh",
    "-c",
    GUARD_SCRIPT,
    "shoal-guard",
    l.bundle,
    mapArgument(l.uidMappings),
    mapArgument(l.gidMappings),
  ];
}

/**
 * The chain's argv, entering the holder `holderPid` made by the guard as root
 * of its user namespace. When that root is the user (--root, or root itself)
 * the user already is it, and nsenter must not set ids and groups: without a
 * subordinate gid range newgidmap denies setgroups in the namespace.
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
    ...(rootIsUser ? ["--preserve-credentials"] : []),
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
