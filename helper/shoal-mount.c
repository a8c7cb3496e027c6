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
 *   optionally k, m, g or %; default the kernel's, half of the memory).
 * check: validates the installation and prints, one "key: value" a line, what
 *   `run` would use. Exit 0 when usable, 1 (with the error line) otherwise.
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
 * repositories.local, repositories.centralized, runtime.runc, runDir and
 * helper.kernelMountUserImages, with shoal's defaults; $HOME and $USER are
 * expanded from the user database (getpwuid of the real uid). No variable of
 * the caller's environment is used for anything: the environment is cleared
 * first, and runc gets only PATH (fixed), HOME, USER, LOGNAME (user database)
 * and XDG_RUNTIME_DIR=/run/user/UID when that directory is the caller's.
 *
 *   Local repository: repositories.local, default $HOME/.local/share/shoal.
 *     shoal itself honours XDG_DATA_HOME; the helper cannot (the environment
 *     is the caller's), so a site whose users keep images elsewhere must set
 *     repositories.local for the helper to accept them.
 *   Run dir: runDir when set; otherwise /run/user/UID/shoal when /run/user/UID
 *     is a directory owned by the caller, else /tmp/shoal-UID. shoal must put
 *     bundles there when it uses the helper, whatever XDG_RUNTIME_DIR says.
 *   runc: runtime.runc, default /usr/sbin/runc, else /usr/bin/runc.
 *
 * What it accepts.
 *   Image: an absolute path, opened once as the caller (O_NOFOLLOW: a symlink
 *     as last component is refused), everything else done through that fd: a
 *     regular file, not on FUSE, with a squashfs 4.0 superblock, whose real
 *     location (the kernel's name for the open file) is inside the
 *     centralized repository or the caller's local repository (each resolved
 *     with realpath as the caller, compared on directory boundaries). It must
 *     be owned by root and not writable by group or others, or be owned by the
 *     caller when helper.kernelMountUserImages is true (the kernel's squashfs
 *     parser then reads data the user wrote: the site's choice).
 *   Bundle: an absolute canonical path (no symlink, ".", ".." or "//"),
 *     strictly below the run dir (resolved with realpath), walked component by
 *     component with O_NOFOLLOW; the run dir and every directory below it must
 *     be owned by the caller or root and not writable by group or others; the
 *     bundle itself owned by the caller, mode 0700. The helper mounts only on
 *     DIR/rootfs, DIR/.mnt and DIR/userns (created as the caller if missing;
 *     refused unless a directory, resp. a regular file, owned by the caller),
 *     through descriptors opened once.
 *
 * What it does (DESIGN.md, "Rootless run", path A): unshare(CLONE_NEWNS) and
 * make / a slave; a tmpfs (root-owned, 0700: the overlay's upper and work
 * dirs, which overlayfs handles with the mounter's credentials, stay out of
 * the user's reach) on DIR/.mnt; the image fd attached read-only with autoclear
 * to a free loop device; squashfs mounted ro,nosuid,nodev, given an idmapped
 * mount (the container's mapping) and attached at DIR/.mnt/lower; an overlay
 * with upper and work on the tmpfs mounted at DIR/rootfs (nodev); then the
 * privilege drop and runc under the watchdog. Every mount lives in the private
 * namespace, which ends with the last process in it (the watchdog kills the
 * container's before it exits); the loop device is released then.
 *
 * Id mapping (shoal's config.json must carry the same uidMappings and
 * gidMappings; `check` prints both). u is the caller's real uid, S:N the
 * first range of the caller (by name or by uid) in /etc/subuid, in file
 * order; the same with the real gid and /etc/subgid.
 *   --root:  0 -> u (1); 1 -> S (N).
 *   default: 0 -> S (min(u, N)); u -> u (1); u+1 -> S+u (N-u, when u < N).
 *   without a range: 0 -> u (1) with --root, u -> u (1) without.
 * The image is shown through the same mapping, so an image file owned by k is
 * owned by k inside the container in both modes (root's stay root's).
 * Without a gid range, setgroups is denied in the namespace, as newgidmap does.
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
 * ends). When runc exits, or the caller dies, it kills every process left in
 * the container: each process whose /proc/PID/ns/user is the container's user
 * namespace, and each child of its own (runc; orphans of the container, which
 * reparent to the subreaper, also from namespaces nested in the container's),
 * by /proc/PID descriptor (pidfd_send_signal: a recycled pid is never hit),
 * round after round until none is left (at most a second), reaping them. The
 * caller may kill processes running as subordinate ids because it owns the
 * namespace (NS_GET_OWNER_UID is checked). When the caller died, the
 * container goes first so that runc sees it end and removes its state dir,
 * then runc. So neither a container that exits nor a killed shoal leaves a
 * process, and with the last process the mount namespace ends: no mount, no
 * loop device. Only SIGKILL of the helper itself leaves the container's
 * processes running (runc dies with it; they keep the namespace alive).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/loop.h>
#include <linux/mount.h>
#include <linux/nsfs.h>
#include <linux/securebits.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define VERSION "0.1.0"
#define USAGE \
  "usage: shoal-mount run --image FILE --bundle DIR [--root] [--userns] [--tmpfs-size SIZE] -- " \
  "RUNC_ARGS..."
#define FUSE_MAGIC 0x65735546
#define SAFE_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define LOOP_TRIES 32
#define MAX_CONFIG (1 << 20)

static void fail(int code, const char *hint, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));

static void fail(int code, const char *hint, const char *fmt, ...) {
  va_list ap;
  fputs("shoal-mount: error: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, " (%s)\n", hint);
  exit(code);
}
#define refuse(...) fail(1, __VA_ARGS__)
#define usage(...) fail(2, USAGE, __VA_ARGS__)
#define ERR strerror(errno)

/* snprintf into a PATH_MAX buffer, refusing rather than truncating a path. */
static void fmt_path(char *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fmt_path(char *out, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(out, PATH_MAX, fmt, ap);
  va_end(ap);
  if (n < 0 || n >= PATH_MAX) refuse("use shorter paths", "a path is longer than %d bytes", PATH_MAX - 1);
}

/* ------------------------------------------------------------------ caller */

static uid_t uid;
static gid_t gid;
static char user[256], home[PATH_MAX];
static gid_t groups[NGROUPS_MAX];
static int ngroups;

static void who_is_calling(void) {
  uid = getuid();
  gid = getgid();
  errno = 0;
  struct passwd *pw = getpwuid(uid);
  if (!pw) refuse("ask your admin", "uid %u is not in the user database", (unsigned)uid);
  if (snprintf(user, sizeof user, "%s", pw->pw_name) >= (int)sizeof user ||
      snprintf(home, sizeof home, "%s", pw->pw_dir) >= (int)sizeof home || home[0] != '/')
    refuse("ask your admin", "the user database entry of uid %u is unusable", (unsigned)uid);
  ngroups = getgroups(NGROUPS_MAX, groups);
  if (ngroups < 0) refuse("this is a bug", "getgroups: %s", ERR);
}

/* Switches the effective uid between the caller (to resolve their paths with
 * their permissions) and root (to mount). The saved uid stays 0 until drop(). */
static void become(uid_t id) {
  if (setresuid(-1, id, -1)) refuse("this is a bug", "seteuid(%u): %s", (unsigned)id, ERR);
}

/* -------------------------------------------------------------- trusted files */

static void parent_of(char *p) {
  char *s = strrchr(p, '/');
  if (s == p) p[1] = 0;
  else if (s) *s = 0;
}

/* path and every directory above it: root-owned, not writable by group/others. */
static void check_chain(const char *path) {
  char p[PATH_MAX];
  fmt_path(p, "%s", path);
  for (size_t n = strlen(p); n > 1 && p[n - 1] == '/'; n--) p[n - 1] = 0;
  for (;;) {
    struct stat st;
    if (lstat(p, &st))
      refuse("make it and every directory above it root-owned, or ask your admin",
             "\"%s\" cannot be checked: %s", p, ERR);
    char hint[PATH_MAX + 64];
    if (st.st_uid != 0) {
      snprintf(hint, sizeof hint, "ask your admin to run: chown root:root \"%s\"", p);
      refuse(hint, "\"%s\" must be owned by root", p);
    }
    /* A symlink's own mode bits are never consulted by Linux. */
    if (!S_ISLNK(st.st_mode) && (st.st_mode & 022)) {
      snprintf(hint, sizeof hint, "ask your admin to run: chmod go-w \"%s\"", p);
      refuse(hint, "\"%s\" must not be writable by group or others", p);
    }
    if (strcmp(p, "/") == 0) return;
    parent_of(p);
  }
}

/* Both chains: the name as given (whoever can write a directory on it can
 * point the name elsewhere) and its target (whoever can write there can
 * replace the file). Returns the resolved path in real. */
static void check_trusted(const char *what, const char *path, char real[PATH_MAX]) {
  if (path[0] != '/') refuse("ask your admin to fix the config", "%s \"%s\" is not absolute", what, path);
  check_chain(path);
  if (!realpath(path, real)) refuse("ask your admin", "%s \"%s\": %s", what, path, ERR);
  check_chain(real);
}

/* ------------------------------------------------------------------ config */

enum key { K_NONE, K_LOCAL, K_CENTRAL, K_RUNC, K_RUNDIR, K_USERIMAGES };
static const struct {
  const char *a, *b;
} KEYS[] = {{0, 0},
            {"repositories", "local"},
            {"repositories", "centralized"},
            {"runtime", "runc"},
            {"runDir", 0},
            {"helper", "kernelMountUserImages"}};
#define NKEYS ((int)(sizeof KEYS / sizeof KEYS[0]))

struct config {
  char file[PATH_MAX];
  char value[NKEYS][PATH_MAX]; /* raw strings, "" when absent */
  int user_images;
  char local[PATH_MAX], central[PATH_MAX], runc[PATH_MAX], rundir[PATH_MAX];
  char runc_real[PATH_MAX]; /* exec'd by this name: its chain is root's alone */
};

/* A strict JSON reader: the whole grammar, no extensions; it keeps only the
 * values of KEYS (a later duplicate wins, as in JSON.parse). */
struct json {
  const char *start, *p, *end, *file;
  struct config *cfg;
  char keys[2][64]; /* object keys of the first two levels; "\1" in an array */
};

static void bad_json(struct json *j, const char *what) {
  refuse("ask your admin to fix it: one JSON object, no comments or trailing commas",
         "\"%s\": invalid JSON at byte %ld: %s", j->file, (long)(j->p - j->start), what);
}

static void ws(struct json *j) {
  while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')) j->p++;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static unsigned hex4(struct json *j) {
  unsigned v = 0;
  for (int i = 0; i < 4; i++, j->p++) {
    int h = j->p < j->end ? hexval(*j->p) : -1;
    if (h < 0) bad_json(j, "bad \\u escape");
    v = v * 16 + (unsigned)h;
  }
  return v;
}

/* Decodes a string into out (size n); returns its length, or -1 when it does
 * not fit or holds a NUL (never a usable path or key). */
static long string(struct json *j, char *out, size_t n) {
  size_t len = 0;
  int usable = 1;
  if (j->p >= j->end || *j->p != '"') bad_json(j, "expected a string");
  j->p++;
  for (;;) {
    if (j->p >= j->end) bad_json(j, "unterminated string");
    unsigned char c = (unsigned char)*j->p++;
    unsigned cp;
    if (c == '"') break;
    if (c < 0x20) bad_json(j, "control character in a string");
    if (c != '\\') {
      cp = c;
      if (len + 1 < n) out[len] = (char)c;
      len++;
      continue;
    }
    if (j->p >= j->end) bad_json(j, "unterminated string");
    c = (unsigned char)*j->p++;
    switch (c) {
      case '"': case '\\': case '/': cp = c; break;
      case 'b': cp = '\b'; break;
      case 'f': cp = '\f'; break;
      case 'n': cp = '\n'; break;
      case 'r': cp = '\r'; break;
      case 't': cp = '\t'; break;
      case 'u':
        cp = hex4(j);
        if (cp >= 0xd800 && cp < 0xdc00 && j->end - j->p >= 6 && j->p[0] == '\\' && j->p[1] == 'u') {
          const char *save = j->p;
          j->p += 2;
          unsigned lo = hex4(j);
          if (lo >= 0xdc00 && lo < 0xe000) cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
          else j->p = save;
        }
        if (cp >= 0xd800 && cp < 0xe000) cp = 0xfffd; /* lone surrogate, as JS decodes it */
        break;
      default: bad_json(j, "bad escape in a string");
    }
    if (cp == 0) usable = 0;
    char buf[4];
    int k = cp < 0x80 ? (buf[0] = (char)cp, 1)
          : cp < 0x800 ? (buf[0] = (char)(0xc0 | cp >> 6), buf[1] = (char)(0x80 | (cp & 63)), 2)
          : cp < 0x10000 ? (buf[0] = (char)(0xe0 | cp >> 12), buf[1] = (char)(0x80 | (cp >> 6 & 63)),
                            buf[2] = (char)(0x80 | (cp & 63)), 3)
                         : (buf[0] = (char)(0xf0 | cp >> 18), buf[1] = (char)(0x80 | (cp >> 12 & 63)),
                            buf[2] = (char)(0x80 | (cp >> 6 & 63)), buf[3] = (char)(0x80 | (cp & 63)), 4);
    for (int i = 0; i < k; i++, len++)
      if (len + 1 < n) out[len] = buf[i];
  }
  if (len + 1 > n || !usable) return -1;
  out[len] = 0;
  return (long)len;
}

static void literal(struct json *j, const char *word) {
  size_t n = strlen(word);
  if ((size_t)(j->end - j->p) < n || memcmp(j->p, word, n)) bad_json(j, "unexpected character");
  j->p += n;
}

static void number(struct json *j) {
#define DIGITS(j) while ((j)->p < (j)->end && *(j)->p >= '0' && *(j)->p <= '9') (j)->p++
  if (*j->p == '-') j->p++;
  if (j->p < j->end && *j->p == '0') j->p++;
  else if (j->p < j->end && *j->p >= '1' && *j->p <= '9') DIGITS(j);
  else bad_json(j, "bad number");
  if (j->p < j->end && *j->p == '.') {
    j->p++;
    if (j->p >= j->end || *j->p < '0' || *j->p > '9') bad_json(j, "bad number");
    DIGITS(j);
  }
  if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
    j->p++;
    if (j->p < j->end && (*j->p == '+' || *j->p == '-')) j->p++;
    if (j->p >= j->end || *j->p < '0' || *j->p > '9') bad_json(j, "bad number");
    DIGITS(j);
  }
#undef DIGITS
}

/* Which wanted key the value at depth (1 = top-level member) is. */
static enum key key_at(struct json *j, int depth) {
  for (int k = 1; k < NKEYS; k++) {
    int want = KEYS[k].b ? 2 : 1;
    if (depth == want && strcmp(j->keys[0], KEYS[k].a) == 0 &&
        (want == 1 || strcmp(j->keys[1], KEYS[k].b) == 0))
      return (enum key)k;
  }
  return K_NONE;
}

static void value(struct json *j, int depth) {
  enum key k = key_at(j, depth);
  char *keyname = k == K_NONE ? NULL : KEYS[k].b ? j->keys[1] : j->keys[0];
  if (depth > 64) bad_json(j, "nested too deeply");
  ws(j);
  if (j->p >= j->end) bad_json(j, "unexpected end");
  char c = *j->p;
  if (k == K_USERIMAGES) {
    if (c == 't') literal(j, "true"), j->cfg->user_images = 1;
    else if (c == 'f') literal(j, "false"), j->cfg->user_images = 0;
    else refuse("ask your admin to fix the config", "\"%s\": helper.%s must be true or false",
                j->file, keyname);
    return;
  }
  if (k != K_NONE) {
    if (c != '"')
      refuse("ask your admin to fix the config", "\"%s\": %s%s%s must be a string", j->file,
             KEYS[k].a, KEYS[k].b ? "." : "", KEYS[k].b ? KEYS[k].b : "");
    if (string(j, j->cfg->value[k], PATH_MAX) < 0)
      refuse("ask your admin to fix the config", "\"%s\": %s%s%s is not a usable path", j->file,
             KEYS[k].a, KEYS[k].b ? "." : "", KEYS[k].b ? KEYS[k].b : "");
    return;
  }
  char scratch[1];
  if (c == '{' || c == '[') {
    j->p++;
    ws(j);
    char close = c == '{' ? '}' : ']';
    if (j->p < j->end && *j->p == close) {
      j->p++;
      return;
    }
    for (;;) {
      ws(j);
      if (depth < 2) j->keys[depth][0] = 1, j->keys[depth][1] = 0;
      if (c == '{') {
        char *slot = depth < 2 ? j->keys[depth] : scratch;
        if (string(j, slot, depth < 2 ? sizeof j->keys[0] : sizeof scratch) < 0 && depth < 2)
          strcpy(slot, "\1"); /* too long to be a wanted key */
        ws(j);
        if (j->p >= j->end || *j->p != ':') bad_json(j, "expected ':'");
        j->p++;
      }
      value(j, depth + 1);
      ws(j);
      if (j->p < j->end && *j->p == ',') {
        j->p++;
        continue;
      }
      if (j->p < j->end && *j->p == close) {
        j->p++;
        if (depth < 2) j->keys[depth][0] = 0;
        return;
      }
      bad_json(j, "expected ',' or a closing bracket");
    }
  }
  if (c == '"') string(j, scratch, sizeof scratch);
  else if (c == 't') literal(j, "true");
  else if (c == 'f') literal(j, "false");
  else if (c == 'n') literal(j, "null");
  else if (c == '-' || (c >= '0' && c <= '9')) number(j);
  else bad_json(j, "unexpected character");
}

static int name_char(char c, int first) {
  return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (!first && c >= '0' && c <= '9');
}

/* $HOME, ${HOME}, $USER and ${USER}, as shoal expands them; any other variable is an error. */
static void expand(const struct config *cfg, const char *key, const char *in, char out[PATH_MAX]) {
  size_t len = 0;
  for (const char *p = in; *p;) {
    const char *name = NULL, *next = p + 1;
    size_t n = 0;
    if (p[0] == '$' && p[1] == '{' && strchr(p + 2, '}')) {
      name = p + 2;
      n = (size_t)(strchr(p + 2, '}') - name);
      next = name + n + 1;
    } else if (p[0] == '$' && name_char(p[1], 1)) {
      name = p + 1;
      for (n = 1; name_char(name[n], 0); n++) {}
      next = name + n;
    }
    const char *sub = NULL;
    if (!name) sub = NULL;
    else if (n == 4 && memcmp(name, "HOME", 4) == 0) sub = home;
    else if (n == 4 && memcmp(name, "USER", 4) == 0) sub = user;
    else
      refuse("write the path out, or use $HOME or $USER",
             "\"%s\": %s: unknown variable $%.*s (only $HOME and $USER are expanded)", cfg->file,
             key, (int)n, name);
    size_t add = sub ? strlen(sub) : 1;
    if (len + add >= PATH_MAX) refuse("ask your admin to fix the config", "\"%s\": %s is too long", cfg->file, key);
    memcpy(out + len, sub ? sub : p, add);
    len += add;
    p = next;
  }
  out[len] = 0;
  if (out[0] != '/')
    refuse("ask your admin to fix the config", "\"%s\": %s must be an absolute path (got \"%s\")",
           cfg->file, key, in);
}

/* Everything about the installation, checked; refuses on the first problem. */
static void load_install(struct config *cfg) {
  char exe[PATH_MAX], real[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n < 0) refuse("is /proc mounted?", "cannot find the helper's own location: %s", ERR);
  exe[n] = 0;
  check_chain(exe);
  char prefix[PATH_MAX];
  fmt_path(prefix, "%s", exe);
  for (int i = 0; i < 3; i++) parent_of(prefix);
  fmt_path(cfg->file, "%s%setc/shoal.json", prefix, strcmp(prefix, "/") ? "/" : "");
  check_trusted("the config", cfg->file, real);

  int fd = open(real, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st)) refuse("ask your admin", "\"%s\": cannot read: %s", cfg->file, ERR);
  if (!S_ISREG(st.st_mode) || st.st_size > MAX_CONFIG)
    refuse("ask your admin", "\"%s\" is not a regular file of at most 1 MiB", cfg->file);
  char *text = malloc((size_t)st.st_size + 1);
  if (!text) refuse("out of memory", "cannot read \"%s\"", cfg->file);
  ssize_t got = 0;
  while (got < st.st_size) {
    ssize_t r = read(fd, text + got, (size_t)(st.st_size - got));
    if (r <= 0) refuse("ask your admin", "\"%s\": cannot read: %s", cfg->file, r ? ERR : "short read");
    got += r;
  }
  close(fd);

  struct json j = {.start = text, .p = text, .end = text + got, .file = cfg->file, .cfg = cfg};
  ws(&j);
  if (j.p >= j.end || *j.p != '{') bad_json(&j, "the config must be a JSON object");
  value(&j, 0);
  ws(&j);
  if (j.p != j.end) bad_json(&j, "text after the object");
  free(text);

  const char *v;
  if (*(v = cfg->value[K_LOCAL])) expand(cfg, "repositories.local", v, cfg->local);
  else fmt_path(cfg->local, "%s/.local/share/shoal", home);
  if (*(v = cfg->value[K_CENTRAL])) {
    if (v[0] != '/')
      refuse("ask your admin to fix the config", "\"%s\": repositories.centralized must be an absolute path", cfg->file);
    fmt_path(cfg->central, "%s", v);
  }
  if (*(v = cfg->value[K_RUNDIR])) {
    expand(cfg, "runDir", v, cfg->rundir);
  } else {
    char run[64];
    snprintf(run, sizeof run, "/run/user/%u", (unsigned)uid);
    if (lstat(run, &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == uid)
      fmt_path(cfg->rundir, "%s/shoal", run);
    else fmt_path(cfg->rundir, "/tmp/shoal-%u", (unsigned)uid);
  }
  if (*(v = cfg->value[K_RUNC])) fmt_path(cfg->runc, "%s", v);
  else fmt_path(cfg->runc, "%s",
                stat("/usr/sbin/runc", &st) == 0 ? "/usr/sbin/runc" : "/usr/bin/runc");
  check_trusted("runc", cfg->runc, cfg->runc_real);
  if (stat(cfg->runc_real, &st) || !S_ISREG(st.st_mode) || !(st.st_mode & 0111))
    refuse("install runc, or set runtime.runc in the config", "runc \"%s\" is not an executable file",
           cfg->runc);
}

/* -------------------------------------------------------------- id mapping */

struct range { unsigned long start, count; };
struct idmap { int n; unsigned long inside[3], outside[3], count[3]; };

/* The first range of the caller in FILE, by name or by uid; none when absent. */
static struct range subrange(const char *file) {
  struct range r = {0, 0};
  FILE *f = fopen(file, "re");
  if (!f) {
    if (errno == ENOENT) return r;
    refuse("ask your admin", "cannot read %s: %s", file, ERR);
  }
  char *line = NULL;
  size_t cap = 0;
  char uidstr[16];
  snprintf(uidstr, sizeof uidstr, "%u", (unsigned)uid);
  while (getline(&line, &cap, f) > 0) {
    char *owner = strtok(line, ":\n"), *start = strtok(NULL, ":\n"), *count = strtok(NULL, ":\n");
    if (!owner || !count || strtok(NULL, "\n") || (strcmp(owner, user) && strcmp(owner, uidstr)))
      continue;
    if (strspn(start, "0123456789") != strlen(start) || strspn(count, "0123456789") != strlen(count) ||
        strlen(start) > 10 || strlen(count) > 10)
      continue;
    unsigned long s = strtoul(start, NULL, 10), c = strtoul(count, NULL, 10);
    if (c == 0 || s + c - 1 > 0xffffffffUL) continue;
    r.start = s;
    r.count = c;
    break;
  }
  free(line);
  fclose(f);
  return r;
}

static void add(struct idmap *m, unsigned long in, unsigned long out, unsigned long count) {
  m->inside[m->n] = in;
  m->outside[m->n] = out;
  m->count[m->n++] = count;
}

/* The rule in the header comment; id is the caller's uid (or gid). */
static struct idmap mapping(unsigned long id, struct range r, int root) {
  struct idmap m = {0};
  if (root) {
    add(&m, 0, id, 1);
    if (r.count) add(&m, 1, r.start, r.count);
  } else if (!r.count) {
    add(&m, id, id, 1);
  } else {
    if (id) add(&m, 0, r.start, id < r.count ? id : r.count);
    add(&m, id, id, 1);
    if (id < r.count) add(&m, id + 1, r.start + id, r.count - id);
  }
  return m;
}

/* As /proc/PID/uid_map wants it (lines: "inside outside count"), or joined by ", ". */
static void format_map(const struct idmap *m, char *out, size_t n, int lines) {
  size_t len = 0;
  out[0] = 0;
  for (int i = 0; i < m->n && len < n; i++)
    len += (size_t)snprintf(out + len, n - len, "%s%lu %lu %lu%s", i && !lines ? ", " : "",
                            m->inside[i], m->outside[i], m->count[i], lines ? "\n" : "");
}

/* -------------------------------------------------------- mount primitives */

static int sys_fsopen(const char *fs) { return (int)syscall(SYS_fsopen, fs, FSOPEN_CLOEXEC); }
static int sys_fsconfig(int fd, unsigned cmd, const char *key, const void *val, int aux) {
  return (int)syscall(SYS_fsconfig, fd, cmd, key, val, aux);
}
static int sys_fsmount(int fd, unsigned attrs) {
  return (int)syscall(SYS_fsmount, fd, FSMOUNT_CLOEXEC, attrs);
}
static int sys_move_mount(int from, const char *fpath, int to, const char *tpath, unsigned flags) {
  return (int)syscall(SYS_move_mount, from, fpath, to, tpath, flags);
}

/* The kernel's own words on why an fsconfig failed, from the context fd. */
static const char *fs_reason(int fs) {
  static char msg[256];
  int saved = errno;
  ssize_t n = read(fs, msg, sizeof msg - 1);
  if (n <= 2) return strerror(saved);
  msg[n] = 0;
  msg[strcspn(msg, "\n")] = 0;
  return msg + 2; /* "e " */
}

/* A new filesystem, mounted detached: returns the mount fd. opts: key=value pairs, NULL-ended. */
static int new_mount(const char *type, const char *source, const char *const *opts, unsigned attrs,
                     const char *what, const char *hint) {
  int fs = sys_fsopen(type);
  if (fs < 0) refuse(hint, "%s: the kernel has no %s filesystem: %s", what, type, ERR);
  if (source && sys_fsconfig(fs, FSCONFIG_SET_STRING, "source", source, 0))
    refuse(hint, "%s: %s", what, fs_reason(fs));
  for (; opts && *opts; opts += 2) {
    int r = opts[1] ? sys_fsconfig(fs, FSCONFIG_SET_STRING, opts[0], opts[1], 0)
                    : sys_fsconfig(fs, FSCONFIG_SET_FLAG, opts[0], NULL, 0);
    if (r) refuse(hint, "%s: option %s: %s", what, opts[0], fs_reason(fs));
  }
  if (sys_fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0)) refuse(hint, "%s: %s", what, fs_reason(fs));
  int m = sys_fsmount(fs, attrs);
  if (m < 0) refuse(hint, "%s: %s", what, ERR);
  close(fs);
  return m;
}

static void attach(int mnt, int dirfd, const char *name, const char *what) {
  unsigned flags = MOVE_MOUNT_F_EMPTY_PATH | (*name ? 0 : MOVE_MOUNT_T_EMPTY_PATH);
  if (sys_move_mount(mnt, "", dirfd, name, flags))
    refuse("this is a bug, or the kernel is too old", "cannot attach %s: %s", what, ERR);
}

/* -------------------------------------------------------- user namespace */

static void write_proc(pid_t pid, const char *file, const char *text) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, file);
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
    refuse("check /etc/subuid and /etc/subgid: ranges must not overlap the user's own id",
           "cannot write %s: %s", path, ERR);
  close(fd);
}

/* A user namespace carrying the container's mapping, owned by the caller: so
 * that runc, running as the caller, may join it, and so that the watchdog,
 * running as the caller, may kill processes of the container that run as
 * subordinate ids (the owner holds CAP_KILL in it). A child creates it with
 * the caller's euid and egid (the kernel makes them the owner) but root's
 * capabilities (securebits keep them across the change of euid), so it works
 * where unprivileged user namespaces are disabled (Debian's sysctl, Ubuntu's
 * AppArmor rule: both ask for CAP_SYS_ADMIN); root writes its maps. */
static int make_userns(const struct idmap *um, const struct idmap *gm, int deny_setgroups) {
  int ready[2], done[2];
  if (pipe2(ready, O_CLOEXEC) || pipe2(done, O_CLOEXEC)) refuse("this is a bug", "pipe: %s", ERR);
  pid_t pid = fork();
  if (pid < 0) refuse("too many processes?", "fork: %s", ERR);
  if (pid == 0) {
    char c = 0;
    close(ready[0]);
    close(done[1]);
    if (prctl(PR_SET_SECUREBITS, SECBIT_NO_SETUID_FIXUP | SECBIT_NO_SETUID_FIXUP_LOCKED, 0, 0, 0) ||
        setresgid(-1, gid, -1) || setresuid(-1, uid, -1) || unshare(CLONE_NEWUSER) ||
        write(ready[1], &c, 1) != 1)
      _exit(1);
    if (read(done[0], &c, 1) < 0) _exit(1);
    _exit(0);
  }
  close(ready[1]);
  close(done[0]);
  char c;
  if (read(ready[0], &c, 1) != 1) {
    waitpid(pid, NULL, 0);
    refuse("is user.max_user_namespaces 0? ask your admin", "cannot create a user namespace");
  }
  char text[256];
  format_map(um, text, sizeof text, 1);
  write_proc(pid, "uid_map", text);
  if (deny_setgroups) write_proc(pid, "setgroups", "deny");
  format_map(gm, text, sizeof text, 1);
  write_proc(pid, "gid_map", text);
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/ns/user", (int)pid);
  int ns = open(path, O_RDONLY | O_CLOEXEC);
  if (ns < 0) refuse("this is a bug", "cannot open %s: %s", path, ERR);
  uid_t owner;
  if (ioctl(ns, NS_GET_OWNER_UID, &owner) || owner != uid)
    refuse("this is a bug", "the container's user namespace is not owned by you");
  close(done[1]);
  close(ready[0]);
  waitpid(pid, NULL, 0);
  return ns;
}

/* ------------------------------------------------------------ the checks */

static int inside(const char *path, const char *dir) {
  size_t n = strlen(dir);
  if (strcmp(dir, "/") == 0) return path[0] == '/';
  return strncmp(path, dir, n) == 0 && path[n] == '/';
}

/* Opens the image as the caller and checks it through that one fd. */
static int open_image(const struct config *cfg, const char *image) {
  if (image[0] != '/') usage("--image must be an absolute path");
  become(uid);
  int fd = open(image, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  int err = errno;
  char local[PATH_MAX], central[PATH_MAX];
  int has_local = realpath(cfg->local, local) != NULL;
  int has_central = *cfg->central && realpath(cfg->central, central) != NULL;
  become(0);
  if (fd < 0 && err == ELOOP)
    refuse("name the image file itself, not a symlink to it", "\"%s\" is a symlink", image);
  if (fd < 0) refuse("check the path; you must be able to read it", "cannot open \"%s\": %s", image, strerror(err));

  struct stat st;
  struct statfs sf;
  if (fstat(fd, &st) || fstatfs(fd, &sf)) refuse("this is a bug", "cannot stat \"%s\": %s", image, ERR);
  if (!S_ISREG(st.st_mode)) refuse("name a squashfs image file", "\"%s\" is not a regular file", image);
  if ((unsigned long)sf.f_type == FUSE_MAGIC)
    refuse("FUSE filesystems can report any owner: keep images on a local or network filesystem",
           "\"%s\" is on a FUSE filesystem", image);

  char self[64], real[PATH_MAX];
  snprintf(self, sizeof self, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(self, real, sizeof real - 1);
  if (n < 0) refuse("this is a bug", "cannot name the open image: %s", ERR);
  real[n] = 0;
  if (!(has_local && inside(real, local)) && !(has_central && inside(real, central)))
    refuse("the helper mounts only images in the centralized repository or in your local "
           "repository, as configured in the site config",
           "\"%s\" is outside the image repositories", image);

  if (st.st_uid == 0) {
    if (st.st_mode & 022)
      refuse("ask your admin to make it writable by root only",
             "image \"%s\" is writable by group or others", image);
  } else if (st.st_uid != uid) {
    refuse("use an image of your own or one of root's", "image \"%s\" belongs to uid %u", image,
           (unsigned)st.st_uid);
  } else if (!cfg->user_images) {
    refuse("this site lets the helper kernel-mount only root's images (helper.kernelMountUserImages); "
           "shoal mounts yours with squashfuse",
           "image \"%s\" is owned by you", image);
  }

  unsigned char sb[96];
  if (pread(fd, sb, sizeof sb, 0) != (ssize_t)sizeof sb || memcmp(sb, "hsqs", 4) ||
      (sb[28] | sb[29] << 8) != 4)
    refuse("name a squashfs image (shoal's repositories hold them)",
           "\"%s\" is not a squashfs 4 image", image);
  uint64_t used = 0;
  for (int i = 7; i >= 0; i--) used = used << 8 | sb[40 + i];
  if (used > (uint64_t)st.st_size)
    refuse("the file is truncated: pull the image again", "\"%s\" is shorter than its superblock says", image);
  return fd;
}

/* Opens DIR/name as the caller, creating it if missing, and checks it is the
 * caller's own directory (or regular file), not a symlink. */
static int own_entry(int dirfd, const char *bundle, const char *name, int want_dir) {
  become(uid);
  int r = want_dir ? mkdirat(dirfd, name, 0700)
                   : openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (r >= 0 && !want_dir) close(r);
  if (r < 0 && errno != EEXIST) refuse("check the bundle dir", "cannot create \"%s/%s\": %s", bundle, name, ERR);
  int fd = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  become(0);
  struct stat st;
  if (fd < 0 || fstat(fd, &st)) refuse("check the bundle dir", "cannot open \"%s/%s\": %s", bundle, name, ERR);
  if (S_ISLNK(st.st_mode) || (want_dir ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode)) || st.st_uid != uid)
    refuse("remove it; the helper creates it", "\"%s/%s\" is not a %s of yours", bundle, name,
           want_dir ? "directory" : "file");
  return fd;
}

/* Walks the bundle path from / with O_NOFOLLOW as the caller; returns an O_PATH fd. */
static int open_bundle(const struct config *cfg, const char *bundle) {
  if (bundle[0] != '/' || strstr(bundle, "//") || strstr(bundle, "/./") || strstr(bundle, "/../") ||
      (strlen(bundle) > 1 && bundle[strlen(bundle) - 1] == '/') ||
      (strlen(bundle) >= 2 && strcmp(bundle + strlen(bundle) - 2, "/.") == 0) ||
      (strlen(bundle) >= 3 && strcmp(bundle + strlen(bundle) - 3, "/..") == 0))
    usage("--bundle must be an absolute path without '.', '..' or '//' (resolve symlinks first)");
  char rundir[PATH_MAX];
  become(uid);
  int ok = realpath(cfg->rundir, rundir) != NULL;
  become(0);
  if (!ok || !inside(bundle, rundir))
    refuse("shoal puts bundles there; see the run dir rule in the helper's documentation",
           "bundle \"%s\" is not below the run dir %s", bundle, cfg->rundir);

  char path[PATH_MAX];
  fmt_path(path, "%s", bundle);
  become(uid);
  int fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
  char *save = NULL, sofar[PATH_MAX] = "";
  for (char *c = strtok_r(path, "/", &save); c && fd >= 0; c = strtok_r(NULL, "/", &save)) {
    int next = openat(fd, c, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    close(fd);
    fd = next;
    strcat(strcat(sofar, "/"), c);
    struct stat st;
    if (fd < 0 || fstat(fd, &st)) refuse("check the path", "cannot open \"%s\": %s", sofar, ERR);
    if (S_ISLNK(st.st_mode))
      refuse("pass the bundle's real path", "\"%s\" on the bundle path is a symlink", sofar);
    if (!S_ISDIR(st.st_mode)) refuse("check the path", "\"%s\" is not a directory", sofar);
    int last = strcmp(sofar, bundle) == 0;
    if (last && (st.st_uid != uid || (st.st_mode & 07777) != 0700))
      refuse("shoal creates it: a directory of yours, mode 0700",
             "bundle \"%s\" must be owned by you with mode 0700", bundle);
    if (!last && strlen(sofar) >= strlen(rundir) &&
        ((st.st_uid != uid && st.st_uid != 0) || (st.st_mode & 022)))
      refuse("it must be yours or root's, not writable by group or others",
             "\"%s\" on the bundle path is not safe", sofar);
  }
  become(0);
  return fd;
}

/* ------------------------------------------------------------ privileges */

static void drop(void) {
  if (setgroups((size_t)ngroups, groups) || setresgid(gid, gid, gid) || setresuid(uid, uid, uid))
    refuse("this is a bug", "cannot drop privileges: %s", ERR);
  uid_t r, e, s;
  gid_t gr, ge, gs;
  struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct d[2];
  if (getresuid(&r, &e, &s) || getresgid(&gr, &ge, &gs) || syscall(SYS_capget, &h, d) ||
      r != uid || e != uid || s != uid || gr != gid || ge != gid || gs != gid ||
      (uid != 0 && (setuid(0) == 0 || d[0].effective || d[0].permitted || d[1].effective || d[1].permitted)))
    refuse("this is a bug", "privileges were not dropped");
}

/* ------------------------------------------------------------ watchdog */

/* shoal never sends it, so it can only be the parent-death signal. */
#define DEATH_SIGNAL (SIGRTMIN + 1)
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

/* One pass over /proc: SIGKILLs every live process in the container's user
 * namespace and, with children set, every child of the watchdog (runc, and
 * the container's orphans, which reparent to it as a subreaper: this also
 * catches processes that left the namespace for one nested in it). A process
 * is first looked at with one stat of its namespace (most are not the
 * container's: ~1 ms per pass saved on a quiet node); a candidate is then
 * held by its /proc/PID descriptor from the check to the kill, so a recycled
 * pid is never signalled. Returns how many it signalled. */
static int kill_pass(const struct stat *ns, int children) {
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
    int candidate = fstatat(dirfd(d), link, &st, 0) == 0 && st.st_dev == ns->st_dev &&
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
static void sweep(const struct stat *ns, pid_t runc, int *status) {
  for (int i = 0; i < SWEEP_ROUNDS; i++) {
    int hits = kill_pass(ns, 1);
    if (!reap(runc, status) && hits == 0) return;
    pause_briefly();
  }
  fputs("shoal-mount: error: processes of the container did not end within a second "
        "(they are killed; their mounts go with the last of them)\n", stderr);
}

/* Runs runc in a child and stays as its watchdog, holding no privilege, until
 * runc exits (then its status is the helper's) or the caller dies (then the
 * container is killed). Either way every process left in the container is
 * killed and reaped before the helper exits: the container's mount namespace,
 * its mounts and the loop device go with the last of them. */
static void watch(const char *runc, char **args, char **envp, pid_t caller, int nsfd) {
  static const int forwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
  sigset_t set, old;
  sigemptyset(&set);
  for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++) sigaddset(&set, forwarded[i]);
  sigaddset(&set, SIGCHLD);
  sigaddset(&set, DEATH_SIGNAL);
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
    sweep(&ns, pid, &status);
    refuse("this is a bug", "cannot watch the container: %s", strerror(err));
  }
  /* The caller may have died before the death signal was armed. */
  if (getppid() != caller) kill(self, DEATH_SIGNAL);

  int orphaned = 0;
  while (status == -1 && !orphaned) {
    struct signalfd_siginfo si;
    ssize_t n = read(sfd, &si, sizeof si);
    if (n < 0 && errno == EINTR) continue;
    if (n != (ssize_t)sizeof si) break;
    int sig = (int)si.ssi_signo;
    if (sig == SIGCHLD) reap(pid, &status);
    /* The signal comes when the caller's thread that started the helper
     * ends; the caller is gone only when the helper was reparented. */
    else if (sig == DEATH_SIGNAL) orphaned = getppid() != caller;
    /* A terminal's signals (SI_KERNEL) reach runc itself, in the same
     * process group; forwarding them as well would deliver them twice. */
    else if (si.ssi_code <= 0) kill(pid, sig);
  }
  if (status == -1) {
    /* The container first, so that runc sees it end, removes its state
     * and exits by itself; then runc if it does not. */
    for (int i = 0; i < SWEEP_ROUNDS / 2 && status == -1; i++) {
      kill_pass(&ns, 0);
      reap(pid, &status);
      if (status == -1) pause_briefly();
    }
  }
  sweep(&ns, pid, &status);
  exit(status == -1 ? 128 + SIGKILL : WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status));
}

/* ------------------------------------------------------------------ run */

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
  if (size && (strspn(size, "0123456789") == 0 || strspn(size, "0123456789") > 12 ||
               strlen(size + strspn(size, "0123456789")) > 1 ||
               !strchr("kmg%", size[strspn(size, "0123456789")])))
    usage("--tmpfs-size takes a number, optionally followed by k, m, g or %%");

  pid_t parent = getppid();
  mode_t umask_was = umask(077);
  struct config cfg = {0};
  load_install(&cfg);
  struct range ur = subrange("/etc/subuid"), gr = subrange("/etc/subgid");
  struct idmap um = mapping(uid, ur, root), gm = mapping(gid, gr, root);

  int ns = make_userns(&um, &gm, gr.count == 0);
  if (unshare(CLONE_NEWNS) || syscall(SYS_mount, "none", "/", NULL, MS_REC | MS_SLAVE, NULL))
    refuse("the helper needs CAP_SYS_ADMIN (is it setuid root, on a suid mount?)",
           "cannot make a private mount namespace: %s", ERR);

  /* From here on, every path is resolved in the private namespace, as the caller. */
  int img = open_image(&cfg, image);
  int bfd = open_bundle(&cfg, bundle);
  int rootfs = own_entry(bfd, bundle, "rootfs", 1);
  int mnt = own_entry(bfd, bundle, ".mnt", 1);
  int nsfile = own_entry(bfd, bundle, "userns", 0);

  const char *tmpfs_opts[] = {"mode", "0700", "uid", "0", "gid", "0", size ? "size" : NULL, size, NULL};
  int tmp = new_mount("tmpfs", "shoal", tmpfs_opts, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
                      "tmpfs", "this is a bug");
  attach(tmp, mnt, "", "the tmpfs");

  char dev[64];
  int loop = -1, ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
  if (ctl < 0) refuse("is the loop module loaded?", "cannot open /dev/loop-control: %s", ERR);
  for (int i = 0; i < LOOP_TRIES && loop < 0; i++) {
    int n = ioctl(ctl, LOOP_CTL_GET_FREE);
    if (n < 0) refuse("too many loop devices in use?", "no free loop device: %s", ERR);
    snprintf(dev, sizeof dev, "/dev/loop%d", n);
    loop = open(dev, O_RDWR | O_CLOEXEC);
    if (loop < 0) refuse("is /dev a devtmpfs?", "cannot open %s: %s", dev, ERR);
    struct loop_config lc;
    memset(&lc, 0, sizeof lc);
    lc.fd = (unsigned)img;
    lc.info.lo_flags = LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR;
    snprintf((char *)lc.info.lo_file_name, LO_NAME_SIZE, "%s", image);
    if (ioctl(loop, LOOP_CONFIGURE, &lc) == 0) break;
    int err = errno;
    close(loop);
    loop = -1;
    if (err != EBUSY) refuse("the kernel needs LOOP_CONFIGURE (Linux 5.8)", "cannot set up %s: %s", dev, strerror(err));
  }
  if (loop < 0) refuse("try again", "loop devices kept being taken by others (%d tries)", LOOP_TRIES);
  close(ctl);

  const char *sq_opts[] = {"ro", NULL, NULL};
  int sq = new_mount("squashfs", dev, sq_opts,
                     MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
                     "the kernel cannot mount the image", "the image is corrupt: pull it again");
  struct stat ls, ms;
  if (fstat(loop, &ls) || fstat(sq, &ms) || ls.st_rdev != ms.st_dev)
    refuse("this is a bug", "the mounted filesystem is not on %s", dev);
  close(loop); /* the mount holds the device; autoclear frees it with the mount */
  close(img);

  struct mount_attr attr = {.attr_set = MOUNT_ATTR_IDMAP, .userns_fd = (uint64_t)ns};
  if (syscall(SYS_mount_setattr, sq, "", AT_EMPTY_PATH, &attr, sizeof attr))
    refuse("the helper needs idmapped squashfs mounts (a recent kernel); shoal can run without it",
           "cannot idmap the image mount: %s", ERR);
  if (mkdirat(tmp, "lower", 0700) || mkdirat(tmp, "upper", 0700) || mkdirat(tmp, "work", 0700))
    refuse("this is a bug", "cannot populate the tmpfs: %s", ERR);
  attach(sq, tmp, "lower", "the image");

  /* The container's / looks like the image's own. */
  int upper = openat(tmp, "upper", O_PATH | O_NOFOLLOW | O_CLOEXEC | O_DIRECTORY);
  int work = openat(tmp, "work", O_PATH | O_NOFOLLOW | O_CLOEXEC | O_DIRECTORY);
  if (upper < 0 || work < 0 || fstat(sq, &ms) ||
      fchownat(upper, "", ms.st_uid, ms.st_gid, AT_EMPTY_PATH) ||
      fchmodat(tmp, "upper", ms.st_mode & 07777, 0))
    refuse("this is a bug", "cannot prepare the overlay: %s", ERR);
  char lowerdir[64], upperdir[64], workdir[64];
  snprintf(lowerdir, sizeof lowerdir, "/proc/self/fd/%d", sq);
  snprintf(upperdir, sizeof upperdir, "/proc/self/fd/%d", upper);
  snprintf(workdir, sizeof workdir, "/proc/self/fd/%d", work);
  const char *ovl_opts[] = {"lowerdir", lowerdir, "upperdir", upperdir, "workdir", workdir, NULL};
  int ovl = new_mount("overlay", "shoal", ovl_opts, MOUNT_ATTR_NODEV, "overlay",
                      "the helper needs overlayfs over idmapped layers (Linux 5.19)");
  attach(ovl, rootfs, "", "the overlay");

  int t = (int)syscall(SYS_open_tree, ns, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH);
  if (t < 0) refuse("this is a bug", "cannot bind the user namespace: %s", ERR);
  attach(t, nsfile, "", "the user namespace");

  drop();
  umask(umask_was);
  char xdg[64], env_home[PATH_MAX + 8], env_user[300], env_logname[300];
  snprintf(env_home, sizeof env_home, "HOME=%s", home);
  snprintf(env_user, sizeof env_user, "USER=%s", user);
  snprintf(env_logname, sizeof env_logname, "LOGNAME=%s", user);
  char *envp[] = {"PATH=" SAFE_PATH, env_home, env_user, env_logname, NULL, NULL};
  snprintf(xdg, sizeof xdg, "/run/user/%u", (unsigned)uid);
  struct stat st;
  char xdg_env[80];
  if (lstat(xdg, &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == uid) {
    snprintf(xdg_env, sizeof xdg_env, "XDG_RUNTIME_DIR=%s", xdg);
    envp[4] = xdg_env;
  }
  argv[sep] = "runc";
  watch(cfg.runc_real, argv + sep, envp, parent, ns);
}

/* ------------------------------------------------------------------ check */

static void check(void) {
  struct config cfg = {0};
  load_install(&cfg);
  struct range ur = subrange("/etc/subuid"), gr = subrange("/etc/subgid");
  char text[256];
  printf("version: %s\nconfig: %s\nrunc: %s\nlocal repository: %s\ncentralized repository: %s\n"
         "run dir: %s\nuser images: %s\n",
         VERSION, cfg.file, cfg.runc, cfg.local, *cfg.central ? cfg.central : "none", cfg.rundir,
         cfg.user_images ? "kernel-mounted" : "refused");
  for (int root = 1; root >= 0; root--) {
    struct idmap um = mapping(uid, ur, root), gm = mapping(gid, gr, root);
    format_map(&um, text, sizeof text, 0);
    printf("uid map%s: %s\n", root ? " --root" : "", text);
    format_map(&gm, text, sizeof text, 0);
    printf("gid map%s: %s\n", root ? " --root" : "", text);
  }
  exit(fflush(stdout) ? 1 : 0);
}

int main(int argc, char **argv) {
  /* A closed 0, 1 or 2 would make the next open() land there and receive
   * error messages or runc's output. */
  for (int fd = 0; fd < 3; fd++)
    if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) != fd) return 1;
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
  if (strcmp(argv[1], "run") != 0) usage("unknown command '%s'", argv[1]);
  int sep = 2;
  while (sep < argc && strcmp(argv[sep], "--") != 0) sep++;
  run(argc, argv, sep);
  return 1;
}
