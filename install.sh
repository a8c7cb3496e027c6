#!/bin/sh
# Installs shoal from this checkout, or removes an installation.
#
# As root, a site install under a prefix (default /usr/local): the executable,
# the setuid helper (when helper/ is in the checkout), a default config and the
# hooks dir, all root-owned. With --user, a home install under ~/.local that
# runs without the helper. Every file and directory an install creates is
# recorded in <prefix>/lib/shoal/manifest, which is what --uninstall removes.
# Nothing installed refers back to this checkout. See docs/admin/install.md.
set -eu
umask 022

ROOT=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
DENO=$ROOT/.tools/bin/deno
TEMPLATE=$ROOT/share/shoal.json.default
MANIFEST=lib/shoal/manifest
# An online `deno compile` downloads denort (tens of MB); where a firewall
# drops packets instead of refusing them it would wait for a long TCP timeout.
COMPILE_TIMEOUT=180

usage() {
  cat <<'EOF'
Usage: ./install.sh [--prefix DIR] [--no-compile] [--script-launcher] [--no-bootstrap]
       ./install.sh --user [--prefix DIR] [--no-compile] [--script-launcher] [--no-bootstrap]
       ./install.sh --uninstall [--prefix DIR | --user]

Installs shoal from this checkout: as root for every user of the machine,
with --user for yourself only.

Options:
  --prefix DIR    install under DIR (default /usr/local; with --user ~/.local)
  --user          install into your home without root: no setuid helper, and
                  a config with the security checks off (it protects nothing
                  privileged)
  --uninstall     remove what an earlier install put under the prefix; a
                  config edited since the install is kept
  --no-compile    install the JavaScript bundle and launcher even where
                  `deno compile` works
  --script-launcher
                  with the bundle, install the launcher as a shell script
                  even where a static one can be built (~1 ms slower a start)
  --no-bootstrap  do not run scripts/bootstrap first
  -h, --help      show this help

shoal is installed as a single executable when `deno compile` can get Deno's
runtime, denort: from dl.deno.land, or on an air-gapped machine from the file
named by DENORT_BIN=/path/to/denort. Otherwise it is installed as one
JavaScript file run by a copy of Deno, through the launcher <prefix>/bin/shoal.
EOF
}

die() {
  echo "install.sh: error: $*" >&2
  exit 1
}
usage_error() {
  echo "install.sh: error: $* (see './install.sh --help')" >&2
  exit 2
}
warn() { echo "install.sh: warning: $*" >&2; }
# One line per action: what was done, to which path.
act() { printf '%-10s %s\n' "$1" "$2"; }
sha() { sha256sum <"$1" | cut -d' ' -f1; }

mode=install
user=no
prefix=
bootstrap=yes
compile=auto
launcher=auto
while [ $# -gt 0 ]; do
  case $1 in
    --prefix)
      if [ $# -lt 2 ] || [ -z "$2" ]; then usage_error "--prefix needs a directory"; fi
      prefix=$2
      shift 2
      ;;
    --prefix=?*) prefix=${1#--prefix=}; shift ;;
    --user) user=yes; shift ;;
    --uninstall) mode=uninstall; shift ;;
    --no-compile) compile=no; shift ;;
    --script-launcher) launcher=script; shift ;;
    --no-bootstrap) bootstrap=no; shift ;;
    -h | --help) usage; exit 0 ;;
    -*) usage_error "unknown option '$1'" ;;
    *) usage_error "unexpected argument '$1'" ;;
  esac
done

if [ "$user" = yes ]; then
  case ${HOME:-} in /?*) ;; *) die "--user needs HOME set to your home directory" ;; esac
  : "${prefix:=$HOME/.local}"
  OWNER=$(id -u)
  OWN=
elif [ "$(id -u)" = 0 ]; then
  : "${prefix:=/usr/local}"
  OWNER=0
  OWN="-o root -g root"
else
  die "a site install needs root: run it as root, or use --user to install into ~/.local"
fi
case $prefix in /*) ;; *) prefix=$(pwd)/$prefix ;; esac
while [ "$prefix" != / ] && [ "${prefix%/}" != "$prefix" ]; do prefix=${prefix%/}; done
[ "$prefix" != / ] || usage_error "--prefix / would scatter shoal over the root directory"
OLD=$prefix/$MANIFEST

# A manifest entry must name a path inside the prefix: uninstall runs as root.
check_rel() {
  [ "$1" != . ] || return 0
  case /$1/ in
    */./* | */../* | //*) die "$OLD has an unexpected entry '$1': remove the installation by hand" ;;
  esac
}

# The path a manifest entry names; '.' is the prefix itself.
path_of() { if [ "$1" = . ]; then echo "$prefix"; else echo "$prefix/$1"; fi; }

# ---------------------------------------------------------------- uninstall

uninstall() {
  if [ ! -f "$OLD" ]; then
    echo "nothing to uninstall: no shoal installation in $prefix"
    return 0
  fi
  # shellcheck disable=SC2094 # the loop reads $OLD; grep and sha only read it too
  while read -r kind _ rel; do
    case $kind in file | config) ;; *) continue ;; esac
    check_rel "$rel"
    path=$prefix/$rel
    [ -e "$path" ] || [ -L "$path" ] || continue
    if [ "$kind" = config ] && ! grep -qxF "config $(sha "$path") $rel" "$OLD"; then
      act kept "$path (edited since it was installed)"
    else
      rm -f "$path"
      act removed "$path"
    fi
  done <"$OLD"
  dirs=$(sed -n 's/^dir - //p' "$OLD")
  rm -f "$OLD"
  act removed "$OLD"
  # Deepest first, so that each directory is empty by the time it comes up.
  printf '%s\n' "$dirs" | awk 'NF { print length($0), $0 }' | sort -rn | cut -d' ' -f2- |
    while read -r rel; do
      check_rel "$rel"
      path=$(path_of "$rel")
      [ -d "$path" ] || continue
      if rmdir "$path" 2>/dev/null; then act removed "$path/"; else act kept "$path/ (not empty)"; fi
    done
}

if [ "$mode" = uninstall ]; then
  uninstall
  exit 0
fi

# ---------------------------------------------------------------- build

parent=$(dirname "$prefix")
[ -d "$parent" ] || die "$parent does not exist: create it, or choose another --prefix"

# Whether directory $1 may stand above files shoal trusts: root's (or, for
# --user, yours) and not writable by group or others (a symlink's own mode
# means nothing). Sets WHY when it may not.
trusted_dir() {
  uid=$(stat -c %u "$1")
  if [ "$uid" != 0 ] && [ "$uid" != "$OWNER" ]; then
    WHY="$1 is owned by uid $uid"
  elif [ ! -L "$1" ] && [ -n "$(find "$1" -maxdepth 0 -perm /022 -print)" ]; then
    WHY="$1 is writable by group or others"
  else
    return 0
  fi
  return 1
}

# A site install is trusted by every user and holds a setuid helper: under a
# directory someone else can write (/tmp, a shared or home directory) that
# someone could replace it. Refused before anything is built; the directory
# itself is never changed (it is not the installation's).
if [ "$user" = no ]; then
  for start in "$parent" "$(readlink -f "$parent")"; do
    p=$start
    while :; do
      trusted_dir "$p" ||
        die "$WHY: a site install under it could be replaced by others; leave it as it is and choose a --prefix whose every directory above is root's and not writable by others (e.g. /opt/shoal)"
      [ "$p" != / ] || break
      p=$(dirname "$p")
    done
  done
fi

if [ "$bootstrap" = yes ]; then
  sh "$ROOT/scripts/bootstrap" || die "scripts/bootstrap failed (see above)"
fi
[ -x "$DENO" ] || die "Deno is not set up in this checkout: run scripts/bootstrap (or drop --no-bootstrap)"
DENO_VERSION=$("$DENO" --version | sed -n '1s/^deno \([^ ]*\).*/\1/p')
export DENO_NO_UPDATE_CHECK=1

STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
trap 'exit 130' INT TERM

# Why Deno failed, in one line: the first informative line of its cause chain.
deno_reason() {
  sed 's/\x1b\[[0-9;]*m//g' "$1" | sed -n 's/^ *[0-9][0-9]*: //p' |
    grep -v '^Setting up base binary' | head -n 1 |
    grep . || sed 's/\x1b\[[0-9;]*m//g' "$1" | sed -n 's/^error: //p' | head -n 1
}

# Everything is built in $STAGE before the prefix is touched, so a failed
# build leaves an earlier installation as it was.
# Baked into the executable; the launcher passes the same (see scripts/shoal).
V8_FLAGS=--v8-flags=--no-lazy,--no-enable-lazy-source-positions,--single-threaded,--min-semi-space-size=16
# What the launcher gives Deno before the entry (words without spaces or quotes:
# the binary launcher splits them at spaces).
DENO_ARGS="run -A --no-config --unstable-lazy-dynamic-imports --quiet --no-prompt $V8_FLAGS"

# Code splitting puts each command's engine in chunks of its own, loaded when
# that command runs: `shoal run` then never loads the registry client, nor
# what it needs from Deno's Node compatibility layer (~10 ms per start).
# Not minified: deno bundle's minifier inlines a variable declared with
# `await using` and so drops its disposal (a pull's work directory stayed).
(cd "$ROOT" && "$DENO" bundle --quiet --code-splitting --outdir "$STAGE/js" main.ts) \
  2>"$STAGE/err" || die "deno bundle failed: $(deno_reason "$STAGE/err")"
# The entry is named for shoal (layout.ts finds the prefix by it); chunks
# import each other, never the entry.
mv "$STAGE/js/main.js" "$STAGE/js/shoal.js"
# `shoal run` alone, bundled apart (main_run.ts says why), for the launcher:
# its chunks go next to the others; a name both bundles made is content-hashed,
# so both files must be the same.
(cd "$ROOT" && "$DENO" bundle --quiet --code-splitting --outdir "$STAGE/js-run" main_run.ts) \
  2>"$STAGE/err" || die "deno bundle of main_run.ts failed: $(deno_reason "$STAGE/err")"
mv "$STAGE/js-run/main_run.js" "$STAGE/js-run/shoal-run.js"
for chunk in "$STAGE"/js-run/*.js; do
  same="$STAGE/js/${chunk##*/}"
  [ ! -e "$same" ] || cmp -s "$chunk" "$same" || die "the two bundles both made ${chunk##*/}, differently"
  mv -f "$chunk" "$same"
done
# deno compile embeds the files' mtimes: fixed ones make rebuilds identical.
touch -d @0 "$STAGE"/js/*.js

# Builds $STAGE/shoal with deno compile and checks that it runs; on failure
# sets WHY and returns non-zero.
try_compile() {
  # The output's name is embedded too, hence always "shoal". No code cache: a
  # compiled program keeps it in $TMPDIR/deno-compile-shoal.cache, a name any
  # user of the node can take first and fill with code that every later user,
  # root included, would run (SECURITY.md); each start compiles instead.
  if (cd "$STAGE" && timeout "$COMPILE_TIMEOUT" "$DENO" compile -A --no-config --no-code-cache \
    --quiet "$V8_FLAGS" --output "$STAGE/shoal" "$STAGE/js/shoal.js") 2>"$STAGE/err"; then
    if version=$("$STAGE/shoal" --version 2>&1) && [ "${version#shoal }" != "$version" ]; then
      return 0
    fi
    WHY="the executable it built does not run shoal (is DENORT_BIN the denort of Deno $DENO_VERSION for $(uname -m)?)"
  elif [ $? = 124 ]; then
    WHY="it gave up after ${COMPILE_TIMEOUT}s"
  else
    WHY=$(deno_reason "$STAGE/err")
  fi
  rm -f "$STAGE/shoal"
  return 1
}

if [ "$compile" = no ]; then
  KIND=bundle
  NOTE="--no-compile"
elif try_compile; then
  KIND=compiled
  NOTE="single executable"
elif [ -n "${DENORT_BIN:-}" ]; then
  die "deno compile with DENORT_BIN=$DENORT_BIN failed: $WHY"
else
  KIND=bundle
  NOTE="deno compile could not get denort: $WHY; set DENORT_BIN=/path/to/denort for a single executable"
fi

if [ "$KIND" = bundle ]; then
  # Deno started with SIGUSR1 and SIGUSR2 blocked (see scripts/shoal); main.ts
  # execs Deno again where this env cannot.
  HOLD=
  if env --block-signal=USR1 --version >/dev/null 2>&1; then
    HOLD="$(command -v env) --block-signal=USR1 --block-signal=USR2 "
  fi
  cat >"$STAGE/launcher" <<'EOF'
#!/bin/sh
# shoal's launcher, written by install.sh: runs the bundled shoal with the Deno
# installed next to it, found from this script's own location so that the
# installation can be moved. -A because shoal reads /proc and /sys and calls
# libc through FFI, which Deno grants only with all permissions.
# Resolving links takes three programs, ~3 ms of every start: only when the
# launcher or its directory is a link, or $0 is not an absolute path.
case $0 in
  /*/*) dir=${0%/*} ;;
  *) dir= ;;
esac
if [ -n "$dir" ] && [ ! -L "$0" ] && [ ! -L "$dir" ]; then
  lib=${dir%/*}/lib/shoal
else
  self=$(readlink -f -- "$0") || exit 1
  lib=$(dirname -- "$(dirname -- "$self")")/lib/shoal
fi
# What is set here is for shoal's Deno alone: the names the caller had not set
# are listed for mod/runtime/env.ts, which keeps them from the container.
added=
if [ -z "${DENO_NO_UPDATE_CHECK+x}" ]; then
  export DENO_NO_UPDATE_CHECK=1
  added=DENO_NO_UPDATE_CHECK
fi
# Deno's caches (the bundle's compiled code, in SQLite databases whose
# write-ahead log every start reads whole) node-local and shoal's alone, in the
# user's run directory (mod/runtime/rundir.ts) rather than under $HOME: a home
# on a network filesystem took every rank's start to the file server, and a
# cache shared with the user's other Deno work grew a log of megabytes. Taken
# only when it is the user's own directory that no other user can replace: in
# /run/user/UID or /tmp where that passes the rule for a directory above a run
# dir (helper/paths.c dir_why: root's or the user's, and sticky and root's
# where others may write it; may_hold). Otherwise, or when the caller set
# DENO_DIR, Deno's choice stays. The cache directory's own mode is not looked
# at: every run makes it 0700 again where its owner widened it
# (mod/runtime/rundir.ts). dash reads /proc a byte at a time, cheaper than
# running id(1); it cannot tell a file's owner but by stat(1) (~1 ms a start,
# which the static launcher does without).
may_hold() {
  info=$(stat -c '%u:%a:%F' -- "$1" 2>/dev/null) || return 1
  owner=${info%%:*}
  rest=${info#*:}
  mode=0${rest%%:*}
  [ "${rest#*:}" = directory ] || return 1
  [ "$owner" = 0 ] || [ "$owner" = "$uid" ] || return 1
  [ $((mode & 022)) = 0 ] || { [ $((mode & 01000)) != 0 ] && [ "$owner" = 0 ]; }
}
if [ -z "${DENO_DIR+x}" ]; then
  uid=
  while IFS=':	 ' read -r key real _; do
    if [ "$key" = Uid ]; then uid=$real; break; fi
  done </proc/self/status
  base=
  if [ -z "$uid" ]; then :
  elif [ -O "/run/user/$uid" ] && may_hold "/run/user/$uid"; then
    base=/run/user/$uid/shoal
  elif may_hold /tmp; then
    base=/tmp/shoal-$uid
  fi
  if [ -n "$base" ]; then
    [ -e "$base" ] || [ -L "$base" ] || mkdir -m 700 "$base" 2>/dev/null
    if [ -d "$base" ] && [ ! -L "$base" ] && [ -O "$base" ]; then
      export DENO_DIR="$base/.deno"
      added="$added DENO_DIR"
    fi
  fi
fi
[ -z "$added" ] || export SHOAL_LAUNCHER_ADDED="$added"
# `shoal run`, the command every job rank starts, has a bundle of its own that
# loads fewer files (~4 ms less); global flags may come first.
entry=shoal.js
for arg in "$@"; do
  case $arg in
    --debug | --verbose | -q | --quiet) ;;
    run) entry=shoal-run.js; break ;;
    *) break ;;
  esac
done
# `deno run` would open an inspector for --inspect in NODE_OPTIONS.
unset NODE_OPTIONS
# The flags, and the signals blocked: see scripts/shoal.
EOF
  cat >>"$STAGE/launcher" <<EOF
exec $HOLD"\$lib/deno" $DENO_ARGS "\$lib/\$entry" "\$@"
EOF
  LAUNCHER=$STAGE/launcher
  LAUNCHER_NOTE="launcher, a shell script"
fi

if [ "$user" = yes ]; then
  # A config only its owner can write protects nothing privileged, and cannot
  # pass the root-ownership checks.
  sed 's/"securityChecks": true/"securityChecks": false/' "$TEMPLATE" >"$STAGE/shoal.json"
  grep -q '"securityChecks": false' "$STAGE/shoal.json" ||
    die "$TEMPLATE has no '\"securityChecks\": true' line to turn off"
else
  cp "$TEMPLATE" "$STAGE/shoal.json"
fi

HELPER=no
if [ "$user" = yes ]; then
  HELPER_NOTE="a user install runs without the setuid helper"
elif [ -f "$ROOT/helper/Makefile" ]; then
  command -v make >/dev/null 2>&1 || die "make is needed to build the helper (scripts/bootstrap installs it)"
  # Built in a copy: several installs may run from one checkout at once. -B:
  # a helper built in the checkout is copied too, with a newer mtime than its sources.
  cp -R "$ROOT/helper" "$STAGE/helper"
  make -s -B -C "$STAGE/helper" shoal-mount >"$STAGE/err" 2>&1 ||
    die "building the helper failed: $(tail -n 1 "$STAGE/err")"
  HELPER=yes
else
  HELPER_NOTE="this checkout has no helper/Makefile yet; shoal runs without the helper"
fi

# The exec shim (helper/exec_shim.c, not setuid) carries commands and
# environments that are not UTF-8 into containers, for user installs too.
SHIM=no
SHIM_NOTE="this checkout has no helper/exec_shim.c"
if [ -f "$ROOT/helper/exec_shim.c" ]; then
  [ -d "$STAGE/helper" ] || cp -R "$ROOT/helper" "$STAGE/helper"
  if ! command -v make >/dev/null 2>&1; then
    SHIM_NOTE="building it needs make (scripts/bootstrap installs it)"
  elif make -s -B -C "$STAGE/helper" shoal-exec shoal-enter >"$STAGE/err" 2>&1; then
    SHIM=yes
  else
    SHIM_NOTE="building it failed, it needs gcc and libc6-dev: $(tail -n 1 "$STAGE/err")"
  fi
fi

# The launcher as a static program (helper/launcher.c), the same steps as
# the script's in ~0.4 ms of every start instead of ~3.3: where it builds, and
# the admin did not ask for the script.
if [ "$KIND" = bundle ] && [ "$launcher" = auto ] && [ -f "$ROOT/helper/launcher.c" ]; then
  [ -d "$STAGE/helper" ] || cp -R "$ROOT/helper" "$STAGE/helper"
  if ! command -v make >/dev/null 2>&1; then
    LAUNCHER_NOTE="$LAUNCHER_NOTE: building the binary one needs make"
  elif make -s -B -C "$STAGE/helper" shoal-launcher DENO_ARGS="$DENO_ARGS" >"$STAGE/err" 2>&1; then
    LAUNCHER=$STAGE/helper/shoal-launcher
    LAUNCHER_NOTE="launcher, a static program"
  else
    LAUNCHER_NOTE="$LAUNCHER_NOTE: building the binary one failed, it needs gcc and libc6-dev: $(tail -n 1 "$STAGE/err")"
  fi
fi

# ---------------------------------------------------------------- install

: >"$STAGE/manifest"
in_old() { [ -f "$OLD" ] && grep -qxF -- "$*" "$OLD"; }
# Notes an entry for the final manifest and, once its directory exists, adds
# it to the manifest on disk at once: an interrupted install can then still
# be uninstalled. Before anything is changed, so nothing escapes it.
record() {
  grep -qxF -- "$*" "$STAGE/manifest" || echo "$*" >>"$STAGE/manifest"
  [ -d "$prefix/lib/shoal" ] || return 0
  in_old "$*" || echo "$*" >>"$OLD"
}
owned_ok() { [ "$(stat -c '%a %u' "$1")" = "$2 $OWNER" ]; }

# Creates REL and the directories above it up to the prefix where missing,
# recording those it created; directories that were there are left alone.
ensure_dir() {
  [ "$1" = . ] || ensure_dir "$(dirname "$1")"
  path=$(path_of "$1")
  if [ -d "$path" ] && [ ! -L "$path" ]; then
    if in_old "dir - $1"; then record "dir - $1"; fi
    return 0
  fi
  if [ -e "$path" ] || [ -L "$path" ]; then die "$path exists and is not a directory"; fi
  record "dir - $1"
  # shellcheck disable=SC2086
  install -d -m 755 $OWN "$path"
  act created "$path/"
}

# Installs SRC as REL with MODE, replacing any older file atomically (a
# running binary cannot be overwritten in place).
install_file() {
  src=$1 rel=$2 fmode=$3 note=${4:+ ($4)}
  dest=$prefix/$rel
  ensure_dir "$(dirname "$rel")"
  record "file $(sha "$src") $rel"
  if [ -f "$dest" ] && [ ! -L "$dest" ] && cmp -s "$src" "$dest" && owned_ok "$dest" "$fmode"; then
    act "up to date" "$dest$note"
    return 0
  fi
  verb=installed
  if [ -e "$dest" ] || [ -L "$dest" ]; then verb=updated; fi
  # shellcheck disable=SC2086
  install -m "$fmode" $OWN "$src" "$dest.new"
  mv -f "$dest.new" "$dest"
  act "$verb" "$dest$note"
}

# The default config goes in only where it cannot overwrite an admin's edits:
# when there is none, or when it is still what an earlier install put there.
install_config() {
  rel=etc/shoal.json
  dest=$prefix/$rel
  ensure_dir etc
  new=$(sha "$STAGE/shoal.json")
  if [ ! -e "$dest" ] && [ ! -L "$dest" ]; then
    verb=installed
  elif ! { [ -f "$OLD" ] && grep -q "^config [0-9a-f]* $rel\$" "$OLD"; }; then
    act kept "$dest (an existing config, not installed by install.sh)"
    return 0
  elif ! in_old "config $(sha "$dest") $rel"; then
    record "$(grep "^config [0-9a-f]* $rel\$" "$OLD" | head -n 1)"
    act kept "$dest (edited since it was installed)"
    return 0
  elif [ "$(sha "$dest")" = "$new" ] && owned_ok "$dest" 644; then
    record "config $new $rel"
    act "up to date" "$dest"
    return 0
  else
    verb=updated
  fi
  record "config $new $rel"
  # shellcheck disable=SC2086
  install -m 644 $OWN "$STAGE/shoal.json" "$dest.new"
  mv -f "$dest.new" "$dest"
  act "$verb" "$dest (default config)"
}

echo "installing shoal into $prefix: $KIND ($NOTE)"
ensure_dir lib/shoal
[ -f "$OLD" ] || echo "# What install.sh put under this prefix (paths relative to it); ./install.sh --uninstall removes it." >"$OLD"
while read -r entry; do in_old "$entry" || echo "$entry" >>"$OLD"; done <"$STAGE/manifest"
if [ "$KIND" = compiled ]; then
  install_file "$STAGE/shoal" bin/shoal 755 "compiled with deno compile"
else
  install_file "$LAUNCHER" bin/shoal 755 "$LAUNCHER_NOTE"
  install_file "$DENO" lib/shoal/deno 755 "Deno $DENO_VERSION"
  install_file "$STAGE/js/shoal.js" lib/shoal/shoal.js 644 bundle
  : >"$STAGE/chunks"
  for chunk in "$STAGE"/js/*.js; do
    [ "$chunk" = "$STAGE/js/shoal.js" ] ||
      install_file "$chunk" "lib/shoal/${chunk##*/}" 644 >>"$STAGE/chunks"
  done
  # One line for the chunks: their names change with every build.
  chunks=$(wc -l <"$STAGE/chunks")
  changed=$(grep -vc '^up to date' "$STAGE/chunks" || :)
  if [ "$changed" = 0 ]; then
    act "up to date" "$prefix/lib/shoal/*.js ($chunks chunks of the bundle)"
  else
    act installed "$prefix/lib/shoal/*.js ($chunks chunks of the bundle, $changed new)"
  fi
fi
install_config
hooks_existed=no
[ -d "$prefix/etc/hooks.d" ] && hooks_existed=yes
ensure_dir etc/hooks.d
[ "$hooks_existed" = no ] || act "up to date" "$prefix/etc/hooks.d/"
# Run with sh by every run without the helper (mod/runtime/launch_fuse.ts).
install_file "$ROOT/mod/runtime/shoal-guard.sh" libexec/shoal/shoal-guard 644 "path B's guard"
if [ "$HELPER" = yes ]; then
  install_file "$STAGE/helper/shoal-mount" libexec/shoal/shoal-mount 4755 "setuid root helper"
else
  act skipped "$prefix/libexec/shoal/shoal-mount ($HELPER_NOTE)"
fi
if [ "$SHIM" = yes ]; then
  install_file "$STAGE/helper/shoal-exec" libexec/shoal/shoal-exec 755 "exec shim for bytes that are not UTF-8"
  install_file "$STAGE/helper/shoal-enter" libexec/shoal/shoal-enter 755 "the ranks' way into their step's container"
else
  warn "$prefix/libexec/shoal/shoal-exec not installed ($SHIM_NOTE): commands and environments that are not UTF-8 will be refused"
fi

# What an earlier install put here and this one did not (another kind, a
# helper no longer built) goes; directories it created stay recorded.
while read -r kind _ rel; do
  case $kind in
    file)
      check_rel "$rel"
      awk -v r="$rel" '$1 == "file" && $3 == r { found = 1 } END { exit !found }' \
        "$STAGE/manifest" && continue
      if [ -e "$prefix/$rel" ]; then
        rm -f "$prefix/$rel"
        act removed "$prefix/$rel"
      fi
      ;;
    dir) [ ! -d "$(path_of "$rel")" ] || record "dir - $rel" ;;
  esac
done <"$OLD"

{
  head -n 1 "$OLD"
  echo "kind - $KIND"
  cat "$STAGE/manifest"
} >"$STAGE/manifest.full"
if ! cmp -s "$STAGE/manifest.full" "$OLD" || ! owned_ok "$OLD" 644; then
  # shellcheck disable=SC2086
  install -m 644 $OWN "$STAGE/manifest.full" "$OLD.new"
  mv -f "$OLD.new" "$OLD"
fi

# shoal refuses to trust a config, helper or hooks dir that someone other than
# root (or, for --user, you) could replace through any directory above it.
# Inside the prefix that is the installation's to fix; above it (a --user
# install's home, say) it is not: shoal goes elsewhere instead.
seen=
check_chain() {
  p=$1
  while :; do
    case " $seen " in *" $p "*) return 0 ;; esac
    seen="$seen $p"
    if ! trusted_dir "$p"; then
      case $p in
        "$prefix" | "$prefix"/*)
          if [ "${WHY%owned by uid*}" != "$WHY" ]; then fix="chown $OWNER \"$p\""; else fix="chmod go-w \"$p\""; fi
          warn "$WHY: shoal's security checks will refuse this installation (run: $fix)"
          ;;
        *) warn "$WHY: shoal's security checks will refuse this installation (leave it as it is; install elsewhere with --prefix)" ;;
      esac
    fi
    [ "$p" != / ] || return 0
    p=$(dirname "$p")
  done
}
for f in etc/shoal.json etc/hooks.d libexec/shoal/shoal-mount libexec/shoal/shoal-exec libexec/shoal/shoal-enter; do
  [ -e "$prefix/$f" ] || continue
  check_chain "$prefix/$f"
  check_chain "$(readlink -f "$prefix/$f")"
done

missing=
for tool in runc newuidmap newgidmap squashfuse fusermount3 tar2sqfs; do
  PATH=$PATH:/usr/sbin:/sbin command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
[ -z "$missing" ] ||
  warn "not found:$missing; shoal needs them to run containers (as root, scripts/bootstrap installs them; 'shoal doctor' explains each)"

version=$("$prefix/bin/shoal" --version 2>&1) || die "the installed $prefix/bin/shoal does not run: $version"
act checked "$prefix/bin/shoal --version: $version"
case ":$PATH:" in
  *":$prefix/bin:"*) echo "done: run 'shoal doctor' to see what this machine supports" ;;
  *) echo "done: run '$prefix/bin/shoal doctor' to see what this machine supports (add $prefix/bin to PATH)" ;;
esac
