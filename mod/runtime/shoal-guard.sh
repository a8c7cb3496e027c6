# shoal's guard of path B, run as `sh shoal-guard ...` by shoal (mod/runtime/guard.ts;
# mod/runtime/launch_fuse.ts tells the design). A file, so that `ps` shows its arguments
# rather than its text.
#
#   sh shoal-guard NEWUIDMAP UIDMAP NEWGIDMAP GIDMAP SETGROUPS [AS BUNDLE IMAGE SIZE SQUASHFUSE]
#
# In the host's namespaces as the user: makes the user namespace U (UIDMAP and GIDMAP as
# newuidmap takes them; SETGROUPS "allow" or "deny") with a holder process and, given a
# BUNDLE, has the image (IMAGE, served by SQUASHFUSE) and the writable layer (a tmpfs of
# SIZE, "" for the kernel's default) mounted at BUNDLE/rootfs in the holder's mount
# namespace, entered as root of U: AS "keep" when the user is it (--root), else "root".
# Its first line of output is the holder's pid, or why there is none. Then it reads
# shoal's lines (its stdin): "end" kills the container's processes (those of U in a mount
# namespace of runc's making), so that runc reports the main process's status; the end
# of its input (shoal is done or gone) kills everything of U.
#
#   sh shoal-guard mount HOLDER BUNDLE IMAGE SIZE SQUASHFUSE
#
# As root of U in the holder's namespaces (the guard starts it with nsenter): the mounts;
# says HOLDER when they are done, then stays as squashfuse's parent, to reap it.

# shellcheck disable=SC3013 # test -ef: dash, busybox sh and bash all have it
set -u
# How many times the guard looks at a killed process before it sleeps between looks.
POLLS=500

if [ "${1-}" = mount ]; then
  holder=$2 d=$3 image=$4 size=$5 squashfuse=$6
  umask 022
  m=$d/.mnt
  r=$d/rootfs
  # Says why in one line (mount(8) adds a second), and takes squashfuse along once it
  # runs: it is never left to init.
  nl='
'
  fail() {
    echo "${1%%"$nl"*}"
    [ -z "${served-}" ] || kill -KILL "$served"
    wait
    exit 1
  }
  # The kernel takes a FUSE mount's connection from a descriptor opened in the mount's own
  # user namespace: opened here, it mounts at once, and squashfuse serves it in the
  # foreground (-f), as this shell's child. Looking up the mount waits until it serves.
  command exec 5<>/dev/fuse || fail "cannot open /dev/fuse: ask your admin to make it usable (mode 0666)"
  err=$(mount -i -t fuse -o "ro,nosuid,nodev,fd=5,rootmode=40000,user_id=0,group_id=0,allow_other" \
    squashfuse "$r" 2>&1) || fail "cannot mount the image with FUSE: $err"
  "$squashfuse" -f "$image" /dev/fd/5 >/dev/null 2>&1 &
  served=$!
  exec 5<&-
  # userxattr: overlay's own xattrs under user.*, which a user namespace may set; without
  # them it refuses to rename directories (EXDEV), and dpkg fails.
  # nosuid: the container's own root filesystem runs nothing with another's privileges.
  err=$({
    mount -t tmpfs -o "mode=0700${size:+,size=$size}" shoal "$m" &&
      mkdir "$m/upper" "$m/work" &&
      mount -t overlay -o "nosuid,userxattr,lowerdir=$r,upperdir=$m/upper,workdir=$m/work" \
        overlay "$r"
  } 2>&1) || fail "cannot mount the image $image (is it a squashfs file?): $err"
  echo "$holder"
  exec >/dev/null
  wait
  exit 0
fi

uidmap=$1 umap=$2 gidmap=$3 gmap=$4 setgroups=$5
as=${6-} bundle=${7-} image=${8-} size=${9-} squashfuse=${10-}
# The run's signals are shoal's to forward; the guard only waits for shoal's word.
trap '' INT QUIT HUP TERM USR1 USR2 PIPE
# The shell would tell of a holder killed by SIGKILL on stderr: the user's stderr is fd 4.
exec 4>&2 2>/dev/null
# Whether process $1 still runs: a killed one stays in U as a zombie until reaped, and a
# zombie has no mount namespace left. One stat: dash reads /proc/PID/stat a byte per
# read(2), ~3 ms for every look.
alive() { [ -e "/proc/$1/ns/mnt" ]; }
# Kills the processes of U (fd 3) but the holder and $2; with $1 ("container"), only
# those whose mount namespace is not the holder's (fd 5): runc made it for the container.
sweep() {
  i=0
  while [ $i -lt 100 ]; do
    pids=
    for f in /proc/[0-9]*/ns/user; do
      [ "$f" -ef /proc/self/fd/3 ] || continue
      p=${f#/proc/}
      p=${p%%/*}
      case " $holder $2 " in *" $p "*) continue ;; esac
      [ -z "$1" ] || [ ! "/proc/$p/ns/mnt" -ef /proc/self/fd/5 ] || continue
      ! alive "$p" || pids="$pids $p"
    done
    [ -n "$pids" ] || return 0
    # shellcheck disable=SC2086 # one argument per pid
    kill -KILL $pids
    # Dying takes a moment: look again soon, and sleep only when it takes longer.
    slow=
    for p in $pids; do
      n=0
      while alive "$p" && [ $n -lt $POLLS ]; do n=$((n + 1)); done
      [ $n -lt $POLLS ] || slow=1
    done
    [ -z "$slow" ] || sleep 0.01 || sleep 1
    i=$((i + 1))
  done
  echo "shoal: warning: processes of the container survived:$pids" >&4
  return 1
}
# The holder passes shoal's lines on to the watcher below; at their end (shoal is done or
# gone) it says so with an empty line and stops, to be killed last. Its output ending
# without that: it is gone.
# shellcheck disable=SC2016 # $$ is the holder's
unshare --user --mount --propagation private --setgroups "$setgroups" -- \
  sh -c 'echo $$; while read -r l; do echo "$l"; done; echo; kill -STOP $$' 2>&1 | {
  read -r holder || exit 1
  case $holder in
    '' | *[!0-9]*) echo "$holder"; exit 1 ;;
  esac
  # Never sweep the host's namespace.
  if ! command exec 3<"/proc/$holder/ns/user" 5<"/proc/$holder/ns/mnt" ||
    [ /proc/self/fd/3 -ef /proc/self/ns/user ]; then
    echo "unshare made no user namespace"
    kill -KILL "$holder"
    exit 1
  fi
  mounter=
  # shellcheck disable=SC2086 # a map is one argument per number (mapArgument)
  if ! err=$(
    "$uidmap" "$holder" $umap 2>&1 &
    "$gidmap" "$holder" $gmap 2>&1 || { wait; exit 1; }
    wait $!
  ); then
    echo "${err:-$uidmap or $gidmap failed}"
  elif [ -z "$bundle" ]; then
    echo "$holder"
  else
    set -- --target="$holder" --user --mount --preserve-credentials
    [ "$as" = keep ] || set -- "$@" --setuid=0 --setgid=0
    nsenter "$@" -- sh "$0" mount "$holder" "$bundle" "$image" "$size" "$squashfuse" &
    mounter=$!
  fi
  what=end
  while [ "$what" = end ]; do
    read -r what || { holder= && break; }
    [ "$what" != end ] || sweep container ""
  done
  # Everything but the mounter, which then reaps squashfuse and ends; a mounter still there
  # (shoal went while it mounted) goes with what it started since.
  sweep "" "$mounter"
  status=$?
  n=0
  while [ -n "$mounter" ] && alive "$mounter" && [ $n -lt $POLLS ]; do n=$((n + 1)); done
  if [ -n "$mounter" ] && alive "$mounter"; then
    sweep "" ""
    status=$?
  fi
  [ -z "$holder" ] || kill -KILL "$holder"
  wait
  exit $status
}
