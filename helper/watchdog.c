#define _GNU_SOURCE
#include "watchdog.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fail.h"

/* shoal never sends it, so it can only be the parent-death signal. */
#define DEATH_SIGNAL (SIGRTMIN + 1)
/* shoal's request to end the container (main.c's header: "The watchdog"). */
#define END_SIGNAL (SIGRTMIN + 2)
/* Kill passes and the pause between them: at most a second of waiting for
 * killed processes to go (one stuck in the kernel, e.g. on a dead NFS server,
 * is left to die of its pending SIGKILL). */
#define SWEEP_ROUNDS 200
#define SWEEP_PAUSE_NS 5000000L

static void pause_briefly(void) {
  struct timespec t = {0, SWEEP_PAUSE_NS};
  nanosleep(&t, NULL);
}

/* The watchdog's children as the kernel lists them (CONFIG_PROC_CHILDREN):
 * how many, or -1 when it does not. */
#define MAX_CHILDREN 16384
static pid_t kids[MAX_CHILDREN];

static int list_children(pid_t self) {
  static char buf[MAX_CHILDREN * 8];
  char path[64];
  snprintf(path, sizeof path, "/proc/self/task/%d/children", (int)self);
  int f = open(path, O_RDONLY | O_CLOEXEC);
  if (f < 0) return -1;
  size_t len = 0;
  for (ssize_t n; len < sizeof buf - 1 && (n = read(f, buf + len, sizeof buf - 1 - len)) != 0;) {
    if (n < 0) {
      if (errno == EINTR) continue;
      close(f);
      return -1;
    }
    len += (size_t)n;
  }
  close(f);
  buf[len] = 0;
  int k = 0;
  for (char *p = buf, *end; k < MAX_CHILDREN; p = end) {
    long v = strtol(p, &end, 10);
    if (end == p) break;
    kids[k++] = (pid_t)v;
  }
  return k;
}

/* Whether a process whose /proc/PID belongs to owner may be in the namespace
 * that um maps: its euid is one um maps, or, for a process that is not
 * dumpable (/proc then names the root of its memory's user namespace, or root
 * where that is unmapped), the namespace's root is the owner. A process of
 * another user, or root's, is none of the container's: the watchdog, as the
 * caller, could not read its namespace anyway (ptrace's rule), except a
 * non-dumpable one of a namespace that maps no root, which is root's here. */
static int may_be_member(const struct idmap *um, uid_t owner) {
  return maps_outside(um, owner) || (owner == 0 && !maps_inside(um, 0));
}

/* One pass over /proc: SIGKILLs every live process in the container's user
 * namespace and, with children set, every child of the watchdog (runc, and
 * the container's orphans, which reparent to it as a subreaper: this also
 * catches processes that left the namespace for one nested in it). A process
 * is first looked at with one stat of its /proc entry, whose owner rules out
 * other users' (may_be_member: ~3 ms a pass on a node of 1,500 processes), then
 * of its namespace (most of the user's own are not the container's); a
 * candidate is then held by its /proc/PID descriptor from the check to the
 * kill, so a recycled pid is never signalled. Returns how many it signalled. */
static int kill_pass(const struct stat *ns, const struct idmap *um, int children) {
  DIR *d = opendir("/proc");
  if (!d) return 0;
  int hits = 0;
  pid_t self = getpid();
  int nkids = children ? list_children(self) : 0;
  for (struct dirent *e; (e = readdir(d));) {
    if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
    char link[300];
    struct stat st;
    snprintf(link, sizeof link, "%s/ns/user", e->d_name);
    int candidate = fstatat(dirfd(d), e->d_name, &st, 0) == 0 && may_be_member(um, st.st_uid) &&
                    fstatat(dirfd(d), link, &st, 0) == 0 && st.st_dev == ns->st_dev &&
                    st.st_ino == ns->st_ino;
    pid_t pid = (pid_t)strtol(e->d_name, NULL, 10);
    /* Children unknown: every process may be one, as its stat will tell. */
    for (int i = 0; !candidate && children && i < (nkids < 0 ? 1 : nkids); i++)
      candidate = nkids < 0 || kids[i] == pid;
    if (!candidate) continue;
    int p = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (p < 0) continue;
    char buf[1024];
    int f = openat(p, "stat", O_RDONLY | O_CLOEXEC);
    ssize_t n = f < 0 ? -1 : read(f, buf, sizeof buf - 1);
    if (f >= 0) close(f);
    buf[n > 0 ? n : 0] = 0;
    char *end = strrchr(buf, ')'), state = end && end[1] ? end[2] : 'X';
    long ppid = end && end[1] && end[2] ? strtol(end + 3, NULL, 10) : 0;
    int member = fstatat(p, "ns/user", &st, 0) == 0 && st.st_dev == ns->st_dev && st.st_ino == ns->st_ino;
    if (state != 'Z' && state != 'X' && (member || (children && ppid == self)) &&
        syscall(SYS_pidfd_send_signal, p, SIGKILL, NULL, 0) == 0)
      hits++;
    close(p);
  }
  closedir(d);
  return hits;
}

/* Reaps every exited child, keeping runc's wait status; 0 when none is left. */
static int reap(pid_t runc, int *status) {
  int ws;
  pid_t p;
  while ((p = waitpid(-1, &ws, WNOHANG)) > 0)
    if (p == runc) *status = ws;
  return !(p < 0 && errno == ECHILD);
}

/* Kills runc and everything of the container until nothing is left. */
static void sweep(const struct stat *ns, const struct idmap *um, pid_t runc, int *status) {
  for (int i = 0; i < SWEEP_ROUNDS; i++) {
    int hits = kill_pass(ns, um, 1);
    if (!reap(runc, status) && hits == 0) return;
    pause_briefly();
  }
  fputs("shoal-mount: error: processes of the container did not end within a second "
        "(they are killed; their mounts go with the last of them)\n", stderr);
}

void watch(const char *runc, char **args, char **envp, pid_t caller, int nsfd, const struct idmap *um) {
  static const int forwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
  sigset_t set, old;
  sigemptyset(&set);
  for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++) sigaddset(&set, forwarded[i]);
  sigaddset(&set, SIGCHLD);
  sigaddset(&set, DEATH_SIGNAL);
  sigaddset(&set, END_SIGNAL);
  struct stat ns;
  /* Set before the fork: a process orphaned the moment after must find it. */
  if (fstat(nsfd, &ns) || sigprocmask(SIG_BLOCK, &set, &old) || prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0))
    refuse("this is a bug", "cannot set up the watchdog: %s", ERR);
  pid_t self = getpid(), pid = fork();
  if (pid < 0) refuse("too many processes?", "fork: %s", ERR);
  if (pid == 0) {
    if (sigprocmask(SIG_SETMASK, &old, NULL) || prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0))
      refuse("this is a bug", "cannot prepare runc: %s", ERR);
    if (getppid() != self) _exit(128 + SIGKILL); /* the watchdog is gone */
    execve(runc, args, envp);
    refuse("check runtime.runc in the config", "cannot run %s: %s", runc, ERR);
  }

  signal(SIGPIPE, SIG_IGN); /* a closed stderr must not end the watch */
  int status = -1, sfd = signalfd(-1, &set, SFD_CLOEXEC);
  if (sfd < 0 || prctl(PR_SET_PDEATHSIG, DEATH_SIGNAL, 0, 0, 0)) {
    int err = errno;
    sweep(&ns, um, pid, &status);
    refuse("this is a bug", "cannot watch the container: %s", strerror(err));
  }
  /* The caller may have died before the death signal was armed. */
  if (getppid() != caller) kill(self, DEATH_SIGNAL);

  int ending = 0;
  while (status == -1 && !ending) {
    struct signalfd_siginfo si;
    ssize_t n = read(sfd, &si, sizeof si);
    if (n < 0 && errno == EINTR) continue;
    if (n != (ssize_t)sizeof si) break;
    int sig = (int)si.ssi_signo;
    if (sig == SIGCHLD) reap(pid, &status);
    /* The signal comes when the caller's thread that started the helper
     * ends; the caller is gone only when the helper was reparented. */
    else if (sig == DEATH_SIGNAL) ending = getppid() != caller;
    /* Only the caller (or root) can send it: the helper has the caller's ids. */
    else if (sig == END_SIGNAL) ending = 1;
    /* A terminal's signals (SI_KERNEL) reach runc itself, in the same
     * process group; forwarding them as well would deliver them twice. */
    else if (si.ssi_code <= 0) kill(pid, sig);
  }
  if (status == -1) {
    /* The container first, so that runc sees it end, removes its state
     * and exits by itself with its status; then runc if it does not. */
    for (int i = 0; i < SWEEP_ROUNDS / 2 && status == -1; i++) {
      kill_pass(&ns, um, 0);
      reap(pid, &status);
      if (status == -1) pause_briefly();
    }
  }
  sweep(&ns, um, pid, &status);
  exit(status == -1 ? 128 + SIGKILL : WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status));
}
