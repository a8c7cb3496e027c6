/*
 * shoal-enter: runs one process in a running container of the caller's,
 * entering its namespaces directly, as `runc exec` would for the containers
 * shoal makes (no terminal, no seccomp profile, no private pid namespace:
 * shoal uses runc exec for those). It is how the ranks of a job step join
 * their step's container (mod/runtime/join.ts): it costs a fork and an exec
 * where runc exec costs a Go start, and nothing sits between the rank's shoal
 * and its process, so a signal Slurm sends to the whole step reaches the
 * rank once.
 *
 *   shoal-enter PID UMASK CAPS GROUPS -- CWD ARG...
 *
 * PID is the container's first process; UMASK the process's umask (octal);
 * CAPS the capabilities the process keeps, as a hex mask (config.json's
 * process.capabilities, which shoal computes: one definition, spec.ts), all
 * others dropped from every set, the bounding set included; GROUPS "clear"
 * to drop the supplementary groups (a root process: runc sets none), or
 * "keep". The environment is the process's own.
 *
 * Not setuid: it runs as the caller, who owns the container's user
 * namespace, and setns(2) lets them into nothing else. It enters the user
 * namespace first (which gives it the capabilities there that entering the
 * mount and UTS namespaces need), then the UTS and mount namespaces (the
 * mount namespace's root becomes its root and working directory), changes
 * to CWD, limits its capabilities, sets no_new_privs and the umask, and
 * execs ARG with the environment's PATH. Statically linked, like shoal-exec.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* A shell's statuses for a command that cannot be run, and shoal's for bad usage. */
enum { NOT_FOUND = 127, CANNOT_EXECUTE = 126, FAILED = 125 };

static void die(const char *what) {
  fprintf(stderr, "shoal-enter: %s: %s\n", what, strerror(errno));
  exit(FAILED);
}

/* Enters PID's namespace `name` unless this process is in it already. */
static void enter(const char *pid, const char *name, int type) {
  char path[64], mine[64];
  snprintf(path, sizeof path, "/proc/%s/ns/%s", pid, name);
  snprintf(mine, sizeof mine, "/proc/self/ns/%s", name);
  struct stat theirs, ours;
  if (stat(path, &theirs)) die(path);
  if (stat(mine, &ours)) die(mine);
  if (theirs.st_ino == ours.st_ino && theirs.st_dev == ours.st_dev) return;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) die(path);
  if (setns(fd, type)) die(name);
  close(fd);
}

/* Keeps only the capabilities of `mask` in every set, the bounding set included. */
static void limit_caps(unsigned long long mask) {
  for (int cap = 0; cap <= CAP_LAST_CAP; cap++)
    if (!(mask & (1ULL << cap)) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) && errno != EINVAL)
      die("dropping a capability from the bounding set");
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) && errno != EINVAL)
    die("clearing ambient capabilities");
  struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct d[2] = {{0}};
  d[0].effective = d[0].permitted = (unsigned)mask;
  d[1].effective = d[1].permitted = (unsigned)(mask >> 32);
  if (syscall(SYS_capset, &h, d)) die("capset");
}

/* A number of `base` no larger than `max`, whole string. */
static int number(const char *s, int base, unsigned long long max, unsigned long long *out) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, base);
  if (errno || *end || end == s || *s == '-' || v > max) return -1;
  *out = v;
  return 0;
}

int main(int argc, char **argv) {
  unsigned long long pid_number, mask, caps;
  if (argc < 8 || number(argv[1], 10, 1ULL << 22, &pid_number) || pid_number == 0 ||
      number(argv[2], 8, 0777, &mask) || number(argv[3], 16, ~0ULL, &caps) ||
      (strcmp(argv[4], "clear") && strcmp(argv[4], "keep")) || strcmp(argv[5], "--") ||
      argv[6][0] != '/') {
    fprintf(stderr, "usage: shoal-enter PID UMASK CAPS GROUPS -- CWD ARG...\n");
    return FAILED;
  }
  const char *pid = argv[1], *cwd = argv[6];
  enter(pid, "user", CLONE_NEWUSER);
  enter(pid, "uts", CLONE_NEWUTS);
  enter(pid, "mnt", CLONE_NEWNS);
  if (chdir(cwd)) die(cwd);
  if (strcmp(argv[4], "clear") == 0 && setgroups(0, NULL) && errno != EPERM) die("setgroups");
  limit_caps(caps);
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) die("no_new_privs");
  umask((mode_t)mask);
  execvp(argv[7], argv + 7);
  int status = errno == ENOENT ? NOT_FOUND : CANNOT_EXECUTE;
  fprintf(stderr, "shoal-enter: %s: %s\n", argv[7], strerror(errno));
  return status;
}
