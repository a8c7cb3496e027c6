/*
 * shoal-mount: the setuid-root helper of shoal, and its only privileged code.
 *
 * It gives an unprivileged user's container a kernel-mounted squashfs image as
 * an idmapped, writable (tmpfs overlay) root filesystem, in a mount namespace
 * of its own, then drops every privilege, runs runc as that user and watches
 * it, so that nothing of the container outlives it.
 *
 * Interface (shoal's runtime calls exactly this):
 *
 *   shoal-mount run --image FILE --bundle DIR [--root] [--userns] [--tmpfs-size SIZE]
 *                   -- RUNC_ARGS...
 *   shoal-mount check
 *   shoal-mount publish DIGEST
 *   shoal-mount ref DIGEST
 *   shoal-mount unref DIGEST
 *   shoal-mount --version
 *
 * run: mounts FILE at DIR/rootfs, privately, and runs `runc RUNC_ARGS...`
 *   (e.g. `--root STATE run --bundle DIR ID`) with the caller's own ids,
 *   groups, umask and file descriptors, staying as its watchdog (below);
 *   runc's exit status is the helper's (128+N when runc dies of signal N).
 *   --root: the container maps uid 0 to the caller (see "Id mapping");
 *   without it the caller keeps their uid inside. The helper also creates the
 *   container's user namespace (owned by the caller, mapped as below) and
 *   bind-mounts it at DIR/userns; config.json must list
 *   {"type": "user", "path": "DIR/userns"}, and runc joins it instead of
 *   creating one: no unprivileged user namespace and no newuidmap needed, and
 *   the watchdog knows the container's processes by it. --userns is accepted
 *   and changes nothing (it used to enable this; it is always done now).
 *   runc 1.1 still wants uidMappings/gidMappings in config.json then, but uses
 *   them only to look ids up: its container uid 0 entry names the owner it
 *   gives its stdio pipes and exec fifo, which only the caller can be (list
 *   0 -> u (1), and u -> u (1) without --root). Otherwise, without --root,
 *   runc 1.1 fails with "fchown fd N" or "chown .../exec.fifo: operation not
 *   permitted", since container root is then a subordinate id the caller
 *   cannot chown to.
 *   File descriptors: the helper passes every descriptor of the caller to
 *   runc untouched (all of its own are close-on-exec), so runc's
 *   `--preserve-fds N` hands the caller's 3..3+N-1 (PMI_FD) to the container;
 *   the helper needs no N of its own.
 *   --tmpfs-size: the tmpfs option size= of the writable layer (digits, then
 *   optionally k, m, g or % of the memory); default, and most, the config's
 *   helper.writableTmpfsSize (default 1g): a larger one is refused.
 * check: validates the installation and prints, one "key: value" a line, what
 *   `run` would use. Exit 0 when usable, 1 (with the error line) otherwise.
 * publish: a user's publish into the cluster store (store.path, owned by the
 *   account store.owner; docs/design/store.md). The helper checks the store
 *   (store.c: every directory above it root's, the store the owner's, not
 *   root, none writable by group or others, no symlink) and the installed
 *   converter (PREFIX/bin/shoal and every file of PREFIX/lib/shoal root's
 *   alone), enters the store, gives up root for the owner's ids with no
 *   supplementary group (verified) and no_new_privs, closes every descriptor
 *   but 0-2, and executes `PREFIX/bin/shoal store convert DIGEST --caller
 *   UID` with PATH, HOME, USER and LOGNAME of the owner only. The caller
 *   keeps no hold on it: it runs as another uid, so they can neither trace
 *   nor signal it, and everything it takes from them (standard input) it
 *   checks against DIGEST.
 * ref: a pull of an image the store already has: as the owner (same checks
 *   and drop), records the caller's reference STORE/refs/UID/<algorithm>-<hex>
 *   when STORE/images/<algorithm>/<hex>/image.sqsh is a regular file; no
 *   converter runs, nothing is downloaded.
 * unref: the caller's `shoal rmi` of a store image: as the owner (same
 *   checks and drop), removes STORE/refs/UID/<algorithm>-<hex> for the
 *   caller's own uid, which is what the garbage collector counts.
 * Errors: one line on stderr, `shoal-mount: error: WHAT (HINT)`; exit 1 when
 *   refused, 2 for a usage error. Nothing is ever mounted in the caller's
 *   mount namespace, so an error at any point leaves nothing behind.
 *
 * What it trusts. Its own location (/proc/self/exe, never an environment
 * variable) names the installation: PREFIX/libexec/shoal/shoal-mount reads
 * PREFIX/etc/shoal.json. That file, the helper itself and runc must be owned by
 * root and not writable by group or others, with every directory above them
 * (the rule of shoal's own security checks, mod/config/security.ts; the
 * helper applies it whatever securityChecks says). Of the config it reads
 * repositories.local, repositories.centralized, runtime.runc, runDir,
 * helper.kernelMountUserImages, helper.maxLoopDevicesPerUser and
 * helper.writableTmpfsSize, with shoal's defaults (mod/config/schema.ts); $HOME and $USER are
 * expanded from the user database (getpwuid of the real uid). No variable of
 * the caller's environment is used for anything: the environment is cleared
 * first, and runc gets only PATH (fixed), HOME, USER, LOGNAME (user database)
 * and XDG_RUNTIME_DIR=/run/user/UID when that directory is the caller's.
 *
 *   Local repository: repositories.local, default $HOME/.local/share/shoal.
 *     shoal itself honours XDG_DATA_HOME; the helper cannot (the environment
 *     is the caller's), so a site whose users keep images elsewhere must set
 *     repositories.local for the helper to accept them.
 *   Run dir: runDir when set (expanded); otherwise none is imposed (see
 *     Bundle). shoal picks $XDG_RUNTIME_DIR/shoal, /run/user/UID/shoal,
 *     /tmp/shoal-UID or a private /tmp/shoal-UID.XXXXXXXX.
 *   runc: runtime.runc, default /usr/sbin/runc, else /usr/bin/runc.
 *
 * What it accepts.
 *   Image: literally REPO/images/NAME, NAME as repositories store images:
 *     sha256-<64 lowercase hex>.sqsh or sha512-<128 lowercase hex>.sqsh; the
 *     path is compared as written (no realpath: no '.', '..', '//'), REPO
 *     being one of:
 *     - the centralized repository, as configured (the admin wrote it in the
 *       root-owned config): checked like the config (every component root's
 *       and not group/other-writable, on the name and on its resolution),
 *       then images/ opened under it with O_NOFOLLOW, root's and not g/o-
 *       writable; the file root's, not g/o-writable;
 *     - the caller's local repository (repositories.local expanded, default
 *       $HOME/.local/share/shoal), only when helper.kernelMountUserImages is
 *       true (the kernel's squashfs parser then reads data the user wrote:
 *       the site's choice): walked from / with O_NOFOLLOW as the caller, no
 *       symlink anywhere, every directory (images/ included) root's or the
 *       caller's and not g/o-writable unless root's and sticky; the file the
 *       caller's, not g/o-writable.
 *     - the cluster store (store.path), whatever kernelMountUserImages says:
 *       literally STORE/images/<algorithm>/<hex>/image.sqsh (paths.h,
 *       store_image_in); the store checked as store.c says, then images/,
 *       the algorithm and the hex directories opened as the caller with
 *       O_NOFOLLOW, each the store owner's and not g/o-writable; the file the
 *       owner's, not g/o-writable. Only the converter, running as that
 *       owner, writes there (see publish).
 *     So cached layer blobs (REPO/blobs/), partial pulls (REPO/tmp/) and
 *     root's files anywhere else are never mounted. The file is opened as
 *     the caller with openat(O_NOFOLLOW) under the images/ fd, everything
 *     else is checked through that fd: a regular file, not empty, not on a
 *     pseudo filesystem (proc, sysfs, debugfs, cgroup, securityfs, bpf,
 *     tracefs, devpts) nor FUSE (which can report any owner), with a squashfs
 *     4.0 superblock no longer than the file.
 *   Bundle: BASE/NAME, NAME matching ^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$; an
 *     absolute path with no ".", ".." or empty component and no trailing '/'
 *     (else a usage error). When the config sets runDir, BASE must equal its
 *     expansion exactly; otherwise any BASE passing the walk is accepted: the
 *     mounts live in the helper's private namespace, so mounting under a
 *     directory only the caller can enter harms no one else. The path is
 *     walked from / component by component with openat(O_PATH|O_NOFOLLOW) as
 *     the caller, each component judged by lstat-like facts of its open fd
 *     (paths.c, dir_why): a symlink anywhere is refused; every directory
 *     strictly above BASE (/ included) must be owned by root or the caller,
 *     and if writable by group or others must have the sticky bit and be
 *     owned by root (like /tmp); BASE must be a directory of the caller with
 *     mode exactly 0700, and so must the bundle dir. The helper mounts only on
 *     DIR/rootfs, DIR/.mnt and DIR/userns (created as the caller if missing;
 *     refused unless a directory, resp. a regular file, owned by the caller),
 *     through descriptors opened once.
 *
 * What it does (docs/design/architecture.md, "Path A, with the helper"):
 * unshare(CLONE_NEWNS) and make / a slave; a tmpfs (root-owned, 0700: the overlay's upper and work
 * dirs, which overlayfs handles with the mounter's credentials, stay out of
 * the user's reach, size as --tmpfs-size says) on DIR/.mnt; the image fd
 * attached read-only with autoclear to a free loop device tagged
 * "shoal-mount:UID:" (loop.h); squashfs mounted ro,nosuid,nodev, given an
 * idmapped mount (the container's mapping) and attached at DIR/.mnt/lower; an
 * overlay with upper and work on the tmpfs mounted at DIR/rootfs (nosuid,
 * nodev); then the privilege drop and runc under the watchdog. Every mount
 * lives in the private namespace, which ends with the last process in it (the
 * watchdog kills the container's before it exits); the loop device and the
 * tmpfs are released then.
 *
 * What it bounds. Anyone holding the namespace (a /proc/PID/ns/mnt descriptor
 * of a container's process, kept after the run) or a process of it (left when
 * the helper itself is SIGKILLed) keeps that run's loop device, squashfs
 * mount and tmpfs alive without limit. So, under a per-user lock
 * (/run/shoal-mount/user-UID.lock, root's), the helper counts the bound loop
 * devices tagged with the caller's uid and refuses a run when there are
 * helper.maxLoopDevicesPerUser (default 256) of them. A user therefore holds
 * at most that many loop devices, squashfs mounts and writable layers through
 * the helper, the layers at most helper.writableTmpfsSize each (what they
 * hold is memory, charged to the writer's memory cgroup).
 *
 * Id mapping (shoal's config.json must carry the same uidMappings and
 * gidMappings; `check` prints both): the one rule of mod/runtime/idmap.ts's
 * header, applied to the real uid with /etc/subuid and to the real gid with
 * /etc/subgid (entries owned by the user's name or uid), implemented in
 * idmap.c (idmap.h lists it step by step). In short: up to 64 of the caller's
 * ranges, in file order, skipping any that overlaps their own id or a range
 * taken before, at most 65,536 ids in all; --root maps 0 -> u and 1.. to
 * them; otherwise the caller keeps u and the ids fill 0..u-1, then u+1..
 * The image is shown through the same mapping, so an image file owned by k is
 * owned by k inside the container in both modes (root's stay root's).
 * Without a subordinate gid, setgroups is denied in the namespace, as
 * newgidmap does.
 *
 * Why RUNC_ARGS pass through unchecked: runc runs with the caller's own ids
 * and no capability (dropped and verified before the fork), so whatever it is
 * asked to do, the caller could have asked for from their own shell.
 * no_new_privs is not set, because runc runs the setuid newuidmap/newgidmap.
 *
 * The watchdog. After the mounts the helper drops every privilege (verified),
 * becomes a child subreaper and forks: the child execs runc (parent-death
 * signal SIGKILL: runc dies with the watchdog); the parent stays, holding
 * nothing but the caller's ids, single-threaded, reading signals from a
 * signalfd. It forwards SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2
 * that a process sends it to runc, which passes them to the container's
 * process; those a terminal generates (Ctrl-C, hangup) already reach runc,
 * in the same process group, and are not sent twice; SIGWINCH is runc's own
 * business (it owns the terminal). Its parent-death signal is SIGRTMIN+1,
 * which shoal never sends; it counts only when the helper was reparented (the
 * kernel also sends it when just the caller's thread that started the helper
 * ends). SIGRTMIN+2 from the caller asks it to end the container: shoal
 * sends it when the container's main process has exited while others still
 * run (runc then waits for them to close their output) and when a stop
 * signal's grace period is over. When runc exits, the caller dies or asks
 * so, it kills every process left in the container: each process whose /proc/PID/ns/user is the container's user
 * namespace, and each child of its own (runc; orphans of the container, which
 * reparent to the subreaper, also from namespaces nested in the container's),
 * by /proc/PID descriptor (pidfd_send_signal: a recycled pid is never hit),
 * round after round until none is left (at most a second), reaping them. The
 * caller may kill processes running as subordinate ids because it owns the
 * namespace (NS_GET_OWNER_UID is checked). When the caller died or asked,
 * the container goes first so that runc sees it end, removes its state dir
 * and exits with the container's status, then runc. So neither a container that exits nor a killed shoal leaves a
 * process, and with the last process the mount namespace ends: no mount, no
 * loop device. Only SIGKILL of the helper itself leaves the container's
 * processes running (runc dies with it; they keep the namespace alive).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/mount.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bundle.h"
#include "caller.h"
#include "config.h"
#include "fail.h"
#include "idmap.h"
#include "image.h"
#include "mounts.h"
#include "publish.h"
#include "userns.h"
#include "watchdog.h"

#define VERSION "0.1.0"
#define SAFE_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define MAX_SUBID_FILE (64 << 20)

/* The ranges taken for caller id own from FILE (/etc/subuid or /etc/subgid;
 * none when it is missing); returns how many. */
static int ranges_of(const char *file, uint32_t own, struct range out[MAX_RANGES]) {
  int fd = open(file, O_RDONLY | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) return 0;
  struct stat st;
  if (fd < 0 || fstat(fd, &st)) refuse("ask your admin", "cannot read %s: %s", file, ERR);
  if (!S_ISREG(st.st_mode) || st.st_size > MAX_SUBID_FILE)
    refuse("ask your admin", "%s is not a regular file of at most 64 MiB", file);
  char *text = malloc((size_t)st.st_size + 1);
  if (!text) refuse("out of memory", "cannot read %s", file);
  size_t len = 0;
  for (ssize_t n; len < (size_t)st.st_size && (n = read(fd, text + len, (size_t)st.st_size - len)) != 0;) {
    if (n < 0) refuse("ask your admin", "cannot read %s: %s", file, ERR);
    len += (size_t)n;
  }
  close(fd);
  int n = usable_ranges(text, len, me.user, me.uid, own, out);
  free(text);
  return n;
}

/* The container's uid and gid maps (idmap.h). */
static void maps(int root, struct idmap *um, struct idmap *gm) {
  struct range r[MAX_RANGES];
  mapping(me.uid, r, ranges_of("/etc/subuid", me.uid, r), root, um);
  mapping(me.gid, r, ranges_of("/etc/subgid", me.gid, r), root, gm);
}

static void run(int argc, char **argv, int sep) {
  const char *image = NULL, *bundle = NULL, *size = NULL;
  int root = 0;
  for (int i = 2; i < sep; i++) {
    if (strcmp(argv[i], "--image") == 0 && i + 1 < sep) image = argv[++i];
    else if (strcmp(argv[i], "--bundle") == 0 && i + 1 < sep) bundle = argv[++i];
    else if (strcmp(argv[i], "--root") == 0) root = 1;
    else if (strcmp(argv[i], "--userns") == 0) continue; /* always, now; still accepted */
    else if (strcmp(argv[i], "--tmpfs-size") == 0 && i + 1 < sep) size = argv[++i];
    else usage("unexpected argument '%s'", argv[i]);
  }
  if (!image || !bundle) usage("run needs --image and --bundle");
  if (sep >= argc - 1) usage("run needs '--' and runc's arguments");
  if (size && tmpfs_bytes(size) < 0) usage("--tmpfs-size takes a number, optionally followed by k, m, g or %%");

  pid_t parent = getppid();
  mode_t umask_was = umask(077);
  struct config cfg = {0};
  load_install(&cfg);
  if (size && tmpfs_bytes(size) > tmpfs_bytes(cfg.tmpfs_size))
    refuse("ask for less, or ask your admin",
           "--tmpfs-size %s is more than this site's writable layers may hold (helper.writableTmpfsSize %s)",
           size, cfg.tmpfs_size);
  static struct idmap um, gm;
  maps(root, &um, &gm);

  int ns = make_userns(&um, &gm);
  if (unshare(CLONE_NEWNS) || syscall(SYS_mount, "none", "/", NULL, MS_REC | MS_SLAVE, NULL))
    refuse("the helper needs CAP_SYS_ADMIN (is it setuid root, on a suid mount?)",
           "cannot make a private mount namespace: %s", ERR);

  /* From here on, every path is resolved in the private namespace, as the caller. */
  int img = open_image(&cfg, image);
  int bfd = open_bundle(&cfg, bundle);
  int rootfs = own_entry(bfd, bundle, "rootfs", 1);
  int mnt = own_entry(bfd, bundle, ".mnt", 1);
  int nsfile = own_entry(bfd, bundle, "userns", 0);
  mount_container(img, image, size ? size : cfg.tmpfs_size, cfg.max_loops, ns, rootfs, mnt, nsfile);

  drop();
  umask(umask_was);
  char xdg[64], env_home[PATH_MAX + 8], env_user[300], env_logname[300];
  snprintf(env_home, sizeof env_home, "HOME=%s", me.home);
  snprintf(env_user, sizeof env_user, "USER=%s", me.user);
  snprintf(env_logname, sizeof env_logname, "LOGNAME=%s", me.user);
  char *envp[] = {"PATH=" SAFE_PATH, env_home, env_user, env_logname, NULL, NULL};
  snprintf(xdg, sizeof xdg, "/run/user/%u", (unsigned)me.uid);
  struct stat st;
  char xdg_env[80];
  if (lstat(xdg, &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == me.uid) {
    snprintf(xdg_env, sizeof xdg_env, "XDG_RUNTIME_DIR=%s", xdg);
    envp[4] = xdg_env;
  }
  argv[sep] = "runc";
  watch(cfg.runc_real, argv + sep, envp, parent, ns, &um);
}

static void check(void) {
  struct config cfg = {0};
  load_install(&cfg);
  char text[MAP_TEXT_MAX];
  printf("version: %s\nconfig: %s\nrunc: %s\nlocal repository: %s\ncentralized repository: %s\n"
         "run dir: %s\nuser images: %s\nloop devices per user: %d\nwritable layer size: %s\n",
         VERSION, cfg.file, cfg.runc, cfg.local, *cfg.central ? cfg.central : "none",
         *cfg.rundir ? cfg.rundir : "any directory of yours, mode 0700 (see docs)",
         cfg.user_images ? "kernel-mounted" : "refused", cfg.max_loops, cfg.tmpfs_size);
  for (int root = 1; root >= 0; root--) {
    static struct idmap um, gm;
    maps(root, &um, &gm);
    format_map(&um, text, 0);
    printf("uid map%s: %s\n", root ? " --root" : "", text);
    format_map(&gm, text, 0);
    printf("gid map%s: %s\n", root ? " --root" : "", text);
  }
  exit(fflush(stdout) ? 1 : 0);
}

/* No check of descriptors 0 to 2: for a setuid program glibc opens /dev/null
 * on any of them that is closed before main, so an open() never lands there. */
int main(int argc, char **argv) {
  if (clearenv()) return 1;
  if (argc < 2) usage("no command");
  if (strcmp(argv[1], "--version") == 0 && argc == 2) {
    printf("shoal-mount %s\n", VERSION);
    return 0;
  }
  if (geteuid() != 0)
    refuse("install it with install.sh as root: owned by root, mode 4755",
           "shoal-mount is not setuid root");
  who_is_calling();
  if (strcmp(argv[1], "check") == 0 && argc == 2) check();
  if (strcmp(argv[1], "publish") == 0 && argc == 3) publish(argv[2]);
  if (strcmp(argv[1], "ref") == 0 && argc == 3) ref(argv[2]);
  if (strcmp(argv[1], "unref") == 0 && argc == 3) unref(argv[2]);
  if (strcmp(argv[1], "run") != 0) usage("unknown command '%s'", argv[1]);
  int sep = 2;
  while (sep < argc && strcmp(argv[sep], "--") != 0) sep++;
  run(argc, argv, sep);
  return 1;
}
