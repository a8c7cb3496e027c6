/*
 * shoal-exec: the container's first program when its command or environment
 * holds bytes that are not UTF-8. runc reads config.json with Go's
 * encoding/json, which turns such bytes into U+FFFD, so shoal passes those
 * strings hex-encoded (ASCII, which survives) and this program, bind-mounted
 * read-only into the container, decodes them and execs the command the way
 * runc would have: with the environment runc set plus the decoded variables,
 * and a name without '/' looked up in that environment's PATH (as Go's
 * exec.LookPath does for runc).
 *
 *   shoal-exec [HEXENV...] -- HEXARG...
 *
 * It runs as the container's process, after runc has applied every
 * restriction (user, capabilities, no_new_privs, seccomp); it is not setuid,
 * opens nothing, and only builds an argv and an envp for execve. It is linked
 * statically so that it needs nothing from the image.
 */
#define _GNU_SOURCE /* strchrnul */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

extern char **environ;

/* Exit statuses of a shell (and of shoal) for a command not found / not executable. */
enum { NOT_FOUND = 127, CANNOT_EXECUTE = 126, BAD_USAGE = 125 };

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/*
 * Decodes lowercase hex `s` in place. Returns 0, or -1 for an odd length, a
 * non-hex digit or an encoded NUL (which no C string can hold).
 */
static int unhex(char *s) {
    size_t n = strlen(s);
    if (n % 2 != 0) return -1;
    for (size_t i = 0; i < n; i += 2) {
        int hi = hexval(s[i]);
        int lo = hexval(s[i + 1]);
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) return -1;
        s[i / 2] = (char)(hi * 16 + lo);
    }
    s[n / 2] = '\0';
    return 0;
}

static int usage(const char *why) {
    fprintf(stderr, "shoal-exec: %s (it is started by shoal run, not by hand)\n", why);
    return BAD_USAGE;
}

static int is_executable_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && !S_ISDIR(st.st_mode) && (st.st_mode & 0111) != 0;
}

/*
 * Execs `argv` with `envp`, a name without '/' found in envp's PATH (an empty
 * element is the working directory, as for Go). Returns only on failure,
 * with the status to exit with.
 */
static int run(char **argv, char **envp) {
    const char *name = argv[0];
    if (strchr(name, '/') != NULL) {
        execve(name, argv, envp);
        int err = errno;
        fprintf(stderr, "shoal: error: '%s' %s in the image (%s)\n", name,
                err == ENOENT ? "not found" : "cannot be executed", strerror(err));
        return err == ENOENT ? NOT_FOUND : CANNOT_EXECUTE;
    }
    const char *path = "";
    for (char **e = envp; *e != NULL; e++) {
        if (strncmp(*e, "PATH=", 5) == 0) {
            path = *e + 5;
            break;
        }
    }
    size_t room = strlen(path) + strlen(name) + 3;
    char *candidate = malloc(room);
    if (candidate == NULL) return usage("out of memory");
    for (const char *dir = path;;) {
        const char *end = strchrnul(dir, ':');
        int len = (int)(end - dir);
        if (len == 0) snprintf(candidate, room, "./%s", name);
        else snprintf(candidate, room, "%.*s/%s", len, dir, name);
        if (is_executable_file(candidate)) {
            execve(candidate, argv, envp);
            int err = errno;
            fprintf(stderr, "shoal: error: '%s' cannot be executed in the image (%s)\n", name,
                    strerror(err));
            free(candidate);
            return CANNOT_EXECUTE;
        }
        if (*end == '\0') break;
        dir = end + 1;
    }
    free(candidate);
    fprintf(stderr,
            "shoal: error: '%s' not found in the image (executable file not found in $PATH)\n",
            name);
    return NOT_FOUND;
}

int main(int argc, char **argv) {
    int sep = 1;
    while (sep < argc && strcmp(argv[sep], "--") != 0) sep++;
    if (sep >= argc - 1) return usage("expected [HEXENV...] -- HEXARG...");

    size_t inherited = 0;
    while (environ[inherited] != NULL) inherited++;
    size_t added = (size_t)(sep - 1);
    char **envp = calloc(inherited + added + 1, sizeof *envp);
    if (envp == NULL) return usage("out of memory");
    memcpy(envp, environ, inherited * sizeof *envp);
    for (int i = 1; i < sep; i++) {
        if (unhex(argv[i]) != 0 || strchr(argv[i], '=') == NULL || argv[i][0] == '=') {
            return usage("an environment entry is not hex-encoded NAME=VALUE");
        }
        envp[inherited + (size_t)(i - 1)] = argv[i];
    }
    for (int i = sep + 1; i < argc; i++) {
        if (unhex(argv[i]) != 0) return usage("an argument is not hex-encoded");
    }
    return run(argv + sep + 1, envp);
}
