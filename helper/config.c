#include "config.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include "caller.h"
#include "fail.h"
#include "json.h"
#include "paths.h"

#define MAX_CONFIG (1 << 20)

static void parent_of(char *p) {
  char *s = strrchr(p, '/');
  if (s == p) p[1] = 0;
  else if (s) *s = 0;
}

/*
 * The hints never send an admin to change a directory above the file: /tmp,
 * /home or a user's home is not shoal's to chown or chmod; the installation
 * moves instead.
 */
void check_chain(const char *path) {
  char p[PATH_MAX];
  fmt_path(p, "%s", path);
  for (size_t n = strlen(p); n > 1 && p[n - 1] == '/'; n--) p[n - 1] = 0;
  for (int above = 0;; above = 1) {
    struct stat st;
    if (lstat(p, &st))
      refuse("make it and every directory above it root-owned, or ask your admin",
             "\"%s\" cannot be checked: %s", p, ERR);
    char hint[PATH_MAX + 128];
    if (st.st_uid != 0) {
      if (above) snprintf(hint, sizeof hint, "ask your admin to install shoal where only root can change the directories above it");
      else snprintf(hint, sizeof hint, "ask your admin to run: chown root:root \"%s\"", p);
      refuse(hint, "\"%s\" must be owned by root", p);
    }
    /* A symlink's own mode bits are never consulted by Linux. */
    if (!S_ISLNK(st.st_mode) && (st.st_mode & 022)) {
      if (above) snprintf(hint, sizeof hint, "ask your admin to install shoal where only root can change the directories above it");
      else snprintf(hint, sizeof hint, "ask your admin to run: chmod go-w \"%s\"", p);
      refuse(hint, "\"%s\" must not be writable by group or others", p);
    }
    if (strcmp(p, "/") == 0) return;
    parent_of(p);
  }
}

/* Both chains: the name as given (whoever can write a directory on it can
 * point the name elsewhere) and its target (whoever can write there can
 * replace the file). Returns the resolved path in real. */
void check_trusted(const char *what, const char *path, char real[PATH_MAX]) {
  if (path[0] != '/') refuse("ask your admin to fix the config", "%s \"%s\" is not absolute", what, path);
  check_chain(path);
  if (!realpath(path, real)) refuse("ask your admin", "%s \"%s\": %s", what, path, ERR);
  check_chain(real);
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
    else if (n == 4 && memcmp(name, "HOME", 4) == 0) sub = me.home;
    else if (n == 4 && memcmp(name, "USER", 4) == 0) sub = me.user;
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

/* The config's text, read whole; the caller frees it. */
static char *read_config(const struct config *cfg, const char *real, size_t *len) {
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
  *len = (size_t)got;
  return text;
}

/* The string value of key, "" when absent; refuses any other type. */
static const char *string_of(const struct config *cfg, const struct json_values *v, enum json_key k) {
  if (v->kind[k] == J_ABSENT) return "";
  if (v->kind[k] == J_UNUSABLE)
    refuse("ask your admin to fix the config", "\"%s\": %s is not a usable path", cfg->file,
           json_key_name(k));
  if (v->kind[k] != J_STRING)
    refuse("ask your admin to fix the config", "\"%s\": %s must be a string", cfg->file, json_key_name(k));
  return v->string[k];
}

long long tmpfs_bytes(const char *size) {
  size_t n = strspn(size, "0123456789");
  if (n == 0 || n > 12 || strlen(size + n) > 1 || (size[n] && !strchr("kmg%", size[n]))) return -1;
  long long v = strtoll(size, NULL, 10);
  struct sysinfo si;
  switch (size[n]) {
    case 'k': return v << 10;
    case 'm': return v << 20;
    case 'g': return v << 30;
    case '%': return sysinfo(&si) ? -1 : (long long)si.totalram * si.mem_unit / 100 * v;
    default: return v;
  }
}

void load_install(struct config *cfg) {
  char exe[PATH_MAX], real[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n < 0) refuse("is /proc mounted?", "cannot find the helper's own location: %s", ERR);
  exe[n] = 0;
  check_chain(exe);
  char *prefix = cfg->prefix;
  fmt_path(prefix, "%s", exe);
  for (int i = 0; i < 3; i++) parent_of(prefix);
  fmt_path(cfg->file, "%s%setc/shoal.json", prefix, strcmp(prefix, "/") ? "/" : "");
  check_trusted("the config", cfg->file, real);

  size_t len;
  char *text = read_config(cfg, real, &len), why[128];
  static struct json_values v;
  size_t at;
  if (json_read(text, len, &v, why, sizeof why, &at))
    refuse("ask your admin to fix it: one JSON object, no comments or trailing commas",
           "\"%s\": invalid JSON at byte %zu: %s", cfg->file, at, why);
  free(text);

  if (v.kind[K_USERIMAGES] != J_ABSENT && v.kind[K_USERIMAGES] != J_TRUE &&
      v.kind[K_USERIMAGES] != J_FALSE)
    refuse("ask your admin to fix the config", "\"%s\": %s must be true or false", cfg->file,
           json_key_name(K_USERIMAGES));
  cfg->user_images = v.kind[K_USERIMAGES] == J_TRUE;
  double loops = v.kind[K_MAXLOOPS] == J_NUMBER ? v.number[K_MAXLOOPS] : DEFAULT_MAX_LOOPS;
  if ((v.kind[K_MAXLOOPS] != J_ABSENT && v.kind[K_MAXLOOPS] != J_NUMBER) || loops != (int)loops ||
      loops < 1 || loops > 4096)
    refuse("ask your admin to fix the config", "\"%s\": %s must be a whole number from 1 to 4096",
           cfg->file, json_key_name(K_MAXLOOPS));
  cfg->max_loops = (int)loops;
  const char *size = *(size = string_of(cfg, &v, K_TMPFS)) ? size : DEFAULT_TMPFS_SIZE;
  if (tmpfs_bytes(size) <= 0 || strlen(size) >= sizeof cfg->tmpfs_size)
    refuse("ask your admin to fix the config", "\"%s\": %s must be a size: digits, then k, m, g or %%",
           cfg->file, json_key_name(K_TMPFS));
  snprintf(cfg->tmpfs_size, sizeof cfg->tmpfs_size, "%s", size);
  const char *s;
  if (*(s = string_of(cfg, &v, K_LOCAL))) expand(cfg, "repositories.local", s, cfg->local);
  else fmt_path(cfg->local, "%s/.local/share/shoal", me.home);
  if (*(s = string_of(cfg, &v, K_CENTRAL))) {
    if (s[0] != '/')
      refuse("ask your admin to fix the config", "\"%s\": repositories.centralized must be an absolute path", cfg->file);
    fmt_path(cfg->central, "%s", s);
  }
  if (*(s = string_of(cfg, &v, K_STORE))) {
    if (s[0] != '/' || !path_canonical(s))
      refuse("ask your admin to fix the config", "\"%s\": store.path must be an absolute path without '.', '..' or '//'", cfg->file);
    fmt_path(cfg->store, "%s", s);
  }
  s = string_of(cfg, &v, K_STOREOWNER);
  if (strlen(s) >= sizeof cfg->store_owner)
    refuse("ask your admin to fix the config", "\"%s\": store.owner is too long", cfg->file);
  snprintf(cfg->store_owner, sizeof cfg->store_owner, "%s", *s ? s : "shoal");
  struct stat st;
  if (*(s = string_of(cfg, &v, K_RUNDIR))) expand(cfg, "runDir", s, cfg->rundir);
  if (*(s = string_of(cfg, &v, K_RUNC))) fmt_path(cfg->runc, "%s", s);
  else fmt_path(cfg->runc, "%s",
                stat("/usr/sbin/runc", &st) == 0 ? "/usr/sbin/runc" : "/usr/bin/runc");
  check_trusted("runc", cfg->runc, cfg->runc_real);
  if (stat(cfg->runc_real, &st) || !S_ISREG(st.st_mode) || !(st.st_mode & 0111))
    refuse("install runc, or set runtime.runc in the config", "runc \"%s\" is not an executable file",
           cfg->runc);
}
