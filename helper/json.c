#include "json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Keys of the first two levels; a second level under a first-level key only. */
static const struct {
  const char *a, *b, *dotted;
} KEYS[NKEYS] = {
    [K_LOCAL] = {"repositories", "local", "repositories.local"},
    [K_CENTRAL] = {"repositories", "centralized", "repositories.centralized"},
    [K_RUNC] = {"runtime", "runc", "runtime.runc"},
    [K_RUNDIR] = {"runDir", NULL, "runDir"},
    [K_USERIMAGES] = {"helper", "kernelMountUserImages", "helper.kernelMountUserImages"},
    [K_MAXLOOPS] = {"helper", "maxLoopDevicesPerUser", "helper.maxLoopDevicesPerUser"},
    [K_TMPFS] = {"helper", "writableTmpfsSize", "helper.writableTmpfsSize"},
    [K_STORE] = {"store", "path", "store.path"},
    [K_STOREOWNER] = {"store", "owner", "store.owner"},
};

/* Deeper than any config; JSON.parse has no limit short of its stack. */
#define MAX_DEPTH 512
#define KEY_MAX 64

struct json {
  const char *start, *p, *end;
  struct json_values *out;
  const char *why; /* the first error; every step returns at once after it */
  const char *at;
  char keys[2][KEY_MAX]; /* object keys of the first two levels; "\1" in an array */
};

const char *json_key_name(enum json_key k) { return KEYS[k].dotted; }

static void bad(struct json *j, const char *why) {
  j->why = why;
  j->at = j->p;
}
#define FAIL(j, why, ...) \
  do { \
    bad(j, why); \
    return __VA_ARGS__; \
  } while (0)

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
    if (h < 0) FAIL(j, "bad \\u escape", 0);
    v = v * 16 + (unsigned)h;
  }
  return v;
}

/* Decodes a string into out (size n); returns its length, or -1 when it does
 * not fit or holds a NUL (never a usable path or key). */
static long string(struct json *j, char *out, size_t n) {
  size_t len = 0;
  int usable = 1;
  if (j->p >= j->end || *j->p != '"') FAIL(j, "expected a string", -1);
  j->p++;
  for (;;) {
    if (j->p >= j->end) FAIL(j, "unterminated string", -1);
    unsigned char c = (unsigned char)*j->p++;
    unsigned cp;
    if (c == '"') break;
    if (c < 0x20) FAIL(j, "control character in a string", -1);
    if (c != '\\') {
      if (len + 1 < n) out[len] = (char)c;
      len++;
      continue;
    }
    if (j->p >= j->end) FAIL(j, "unterminated string", -1);
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
        if (j->why) return -1;
        if (cp >= 0xd800 && cp < 0xdc00 && j->end - j->p >= 6 && j->p[0] == '\\' && j->p[1] == 'u') {
          const char *save = j->p;
          j->p += 2;
          unsigned lo = hex4(j);
          if (j->why) return -1;
          if (lo >= 0xdc00 && lo < 0xe000) cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
          else j->p = save;
        }
        if (cp >= 0xd800 && cp < 0xe000) cp = 0xfffd; /* lone surrogate, as UTF-8 encoders write it */
        break;
      default: FAIL(j, "bad escape in a string", -1);
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
  if ((size_t)(j->end - j->p) < n || memcmp(j->p, word, n)) FAIL(j, "unexpected character");
  j->p += n;
}

static int digit(struct json *j) { return j->p < j->end && *j->p >= '0' && *j->p <= '9'; }

/* Checks a number's grammar; returns its value (strtod rounds as JSON.parse does). */
static double number(struct json *j) {
  const char *from = j->p;
  if (*j->p == '-') j->p++;
  if (j->p < j->end && *j->p == '0') j->p++;
  else if (j->p < j->end && *j->p >= '1' && *j->p <= '9') while (digit(j)) j->p++;
  else FAIL(j, "bad number", 0);
  if (j->p < j->end && *j->p == '.') {
    j->p++;
    if (!digit(j)) FAIL(j, "bad number", 0);
    while (digit(j)) j->p++;
  }
  if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
    j->p++;
    if (j->p < j->end && (*j->p == '+' || *j->p == '-')) j->p++;
    if (!digit(j)) FAIL(j, "bad number", 0);
    while (digit(j)) j->p++;
  }
  size_t n = (size_t)(j->p - from);
  char *copy = malloc(n + 1);
  if (!copy) FAIL(j, "out of memory", 0);
  memcpy(copy, from, n);
  copy[n] = 0;
  double v = strtod(copy, NULL);
  free(copy);
  return v;
}

/* Which wanted key the value at depth (1 = top-level member) is, or NKEYS. */
static enum json_key key_at(struct json *j, int depth) {
  for (int k = 0; k < NKEYS; k++) {
    int want = KEYS[k].b ? 2 : 1;
    if (depth == want && strcmp(j->keys[0], KEYS[k].a) == 0 &&
        (want == 1 || strcmp(j->keys[1], KEYS[k].b) == 0))
      return (enum json_key)k;
  }
  return NKEYS;
}

static void value(struct json *j, int depth) {
  if (depth > MAX_DEPTH) FAIL(j, "nested too deeply");
  ws(j);
  if (j->p >= j->end) FAIL(j, "unexpected end");
  enum json_key k = key_at(j, depth);
  struct json_values *v = j->out;
  /* A later duplicate of a first-level key replaces everything below it. */
  for (int i = 0; depth == 1 && i < NKEYS; i++)
    if (strcmp(j->keys[0], KEYS[i].a) == 0) v->kind[i] = J_ABSENT;
  char c = *j->p;
  if (k != NKEYS && c == '"') {
    long n = string(j, v->string[k], JSON_VALUE_MAX);
    v->kind[k] = n < 0 ? J_UNUSABLE : J_STRING;
    return;
  }
  if (k != NKEYS && (c == '-' || (c >= '0' && c <= '9'))) {
    v->number[k] = number(j);
    v->kind[k] = J_NUMBER;
    return;
  }
  if (k != NKEYS) v->kind[k] = c == 't' ? J_TRUE : c == 'f' ? J_FALSE : J_OTHER;
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
        long n = string(j, slot, depth < 2 ? KEY_MAX : sizeof scratch);
        if (j->why) return;
        if (n < 0 && depth < 2) strcpy(slot, "\1"); /* too long to be a wanted key */
        ws(j);
        if (j->p >= j->end || *j->p != ':') FAIL(j, "expected ':'");
        j->p++;
      }
      value(j, depth + 1);
      if (j->why) return;
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
      FAIL(j, "expected ',' or a closing bracket");
    }
  }
  if (c == '"') string(j, scratch, sizeof scratch);
  else if (c == 't') literal(j, "true");
  else if (c == 'f') literal(j, "false");
  else if (c == 'n') literal(j, "null");
  else if (c == '-' || (c >= '0' && c <= '9')) number(j);
  else bad(j, "unexpected character");
}

int json_read(const char *text, size_t len, struct json_values *out, char *err, size_t errlen,
              size_t *at) {
  struct json j = {.start = text, .p = text, .end = text + len, .out = out};
  memset(out, 0, sizeof *out);
  /* shoal reads the file as text, which drops a leading byte order mark. */
  if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0) j.p += 3;
  ws(&j);
  if (j.p >= j.end || *j.p != '{') bad(&j, "the config must be a JSON object");
  else value(&j, 0);
  ws(&j);
  if (!j.why && j.p != j.end) bad(&j, "text after the object");
  if (!j.why) return 0;
  snprintf(err, errlen, "%s", j.why);
  *at = (size_t)(j.at - j.start);
  return -1;
}
