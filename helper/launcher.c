/*
 * shoal's launcher, <prefix>/bin/shoal of a bundle install where install.sh
 * can build it (otherwise it writes a shell script that does the same, whose
 * comments say why each step is there): runs the bundled shoal with the Deno
 * installed next to it. A static program, ~0.4 ms of every start where the
 * script, env(1) and stat(1) take ~3.3 ms, and every job rank is a start.
 *
 * In the script's order:
 * - the installation from /proc/self/exe, the launcher's own file with every
 *   link resolved: <prefix>/bin/shoal gives <prefix>/lib/shoal;
 * - DENO_NO_UPDATE_CHECK=1 unless the caller set it;
 * - DENO_DIR, unless the caller set it, in the user's run directory:
 *   /run/user/UID/shoal, else /tmp/shoal-UID, where /run/user/UID or /tmp
 *   passes the rule for a directory above a run dir (paths.c dir_why, the
 *   helper's and mod/runtime/rundir.ts's: root's or the user's, and sticky
 *   and root's where others may write it); made 0700 when missing, taken only
 *   when it is a directory (not a link) of the user's;
 * - SHOAL_LAUNCHER_ADDED: the names it set, which shoal keeps from the
 *   container (mod/runtime/env.ts);
 * - shoal-run.js, the bundle of `shoal run` alone, when the command is `run`
 *   (after global flags), shoal.js otherwise;
 * - NODE_OPTIONS unset;
 * - SIGUSR1 and SIGUSR2 blocked (mod/sys/signals.ts says why);
 * - exec of Deno with DENO_ARGS (install.sh's, given at build time), the
 *   entry and the caller's arguments.
 *
 * Not setuid: it runs as the caller, and judges the directories it hands
 * Deno as the script does, by lstat (no link followed), owner and mode.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "paths.h"

#ifndef DENO_ARGS
#error "DENO_ARGS: Deno's arguments before the entry, space-separated (install.sh gives them)"
#endif

/* A shell's statuses for a command it cannot run. */
enum { NOT_FOUND = 127, CANNOT_EXECUTE = 126 };
static char lib[PATH_MAX];

/* Whether path may hold the user's run directory (paths.c dir_why, ABOVE_BASE). */
static int may_hold(const char *path) {
  struct stat st;
  return lstat(path, &st) == 0 && dir_why(ABOVE_BASE, st.st_uid, st.st_mode, getuid()) == NULL;
}

/* Whether `path` is a directory of the effective user's, itself and not a link to one. */
static int own_dir(const char *path) {
  struct stat st;
  return lstat(path, &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == geteuid();
}

/* <prefix>/lib/shoal from /proc/self/exe (<prefix>/bin/shoal); -1 when it cannot be read. */
static int find_lib(void) {
  char self[PATH_MAX];
  errno = 0;
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return -1;
  self[n] = '\0';
  char *bin = strrchr(self, '/');
  if (bin == NULL) return -1;
  *bin = '\0';
  char *prefix = strrchr(self, '/');
  if (prefix == NULL) return -1;
  *prefix = '\0';
  int len = snprintf(lib, sizeof lib, "%s/lib/shoal", self);
  return len > 0 && (size_t)len < sizeof lib ? 0 : -1;
}

/* The run directory Deno's caches go to, or "" (see the header). */
static void run_dir(char *base, size_t size) {
  char user_dir[32];
  unsigned uid = (unsigned)getuid();
  base[0] = '\0';
  snprintf(user_dir, sizeof user_dir, "/run/user/%u", uid);
  if (own_dir(user_dir) && may_hold(user_dir))
    snprintf(base, size, "%s/shoal", user_dir);
  else if (may_hold("/tmp"))
    snprintf(base, size, "/tmp/shoal-%u", uid);
  if (base[0] == '\0') return;
  // mkdir's mode is narrowed by the umask; chmod makes it 0700 whatever the umask.
  if (mkdir(base, 0700) == 0) (void)chmod(base, 0700);
  if (!own_dir(base)) base[0] = '\0';
}

/* Sets what Deno needs that the caller did not set; lists the names in SHOAL_LAUNCHER_ADDED. */
static void deno_environment(void) {
  char added[64] = "";
  if (getenv("DENO_NO_UPDATE_CHECK") == NULL && setenv("DENO_NO_UPDATE_CHECK", "1", 1) == 0)
    strcat(added, "DENO_NO_UPDATE_CHECK");
  if (getenv("DENO_DIR") == NULL) {
    char base[64], dir[80];
    run_dir(base, sizeof base);
    if (base[0] != '\0') {
      snprintf(dir, sizeof dir, "%s/.deno", base);
      if (setenv("DENO_DIR", dir, 1) == 0) strcat(added, added[0] ? " DENO_DIR" : "DENO_DIR");
    }
  }
  if (added[0] != '\0') (void)setenv("SHOAL_LAUNCHER_ADDED", added, 1);
  (void)unsetenv("NODE_OPTIONS");
}

/* The bundle's entry for this command line. */
static const char *entry_for(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--debug") || !strcmp(a, "--verbose") || !strcmp(a, "-q") ||
        !strcmp(a, "--quiet"))
      continue;
    return strcmp(a, "run") == 0 ? "shoal-run.js" : "shoal.js";
  }
  return "shoal.js";
}

int main(int argc, char **argv) {
  if (find_lib()) {
    fprintf(stderr, "shoal: error: cannot find the installation from /proc/self/exe: %s\n",
            errno ? strerror(errno) : "not under <prefix>/bin");
    return NOT_FOUND;
  }
  deno_environment();

  static char words[] = DENO_ARGS;
  static char deno[PATH_MAX + 8], entry[PATH_MAX + 32];
  snprintf(deno, sizeof deno, "%s/deno", lib);
  snprintf(entry, sizeof entry, "%s/%s", lib, entry_for(argc, argv));
  size_t count = 1;
  for (const char *c = words; *c; c++) count += *c == ' ';
  char **args = calloc((size_t)argc + count + 2, sizeof *args);
  if (args == NULL) {
    fprintf(stderr, "shoal: error: out of memory\n");
    return CANNOT_EXECUTE;
  }
  int n = 0;
  args[n++] = deno;
  char *save = NULL;
  for (char *w = strtok_r(words, " ", &save); w != NULL; w = strtok_r(NULL, " ", &save))
    args[n++] = w;
  args[n++] = entry;
  for (int i = 1; i < argc; i++) args[n++] = argv[i];
  args[n] = NULL;

  sigset_t held;
  sigemptyset(&held);
  sigaddset(&held, SIGUSR1);
  sigaddset(&held, SIGUSR2);
  sigprocmask(SIG_BLOCK, &held, NULL);
  execv(deno, args);
  int status = errno == ENOENT ? NOT_FOUND : CANNOT_EXECUTE;
  fprintf(stderr, "shoal: error: cannot run %s: %s (reinstall shoal)\n", deno, strerror(errno));
  free(args);
  return status;
}
