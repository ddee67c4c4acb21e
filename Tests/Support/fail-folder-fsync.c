// fail-folder-fsync: an LD_PRELOAD shim for tests that makes fsync(2) of chosen folders fail.
//
// Why: a folder's fsync failing (EIO from a dying disk, a filesystem gone read-only) cannot be
// provoked on a healthy machine without root, yet the receiver must refuse what it could not make
// durable. Loaded into a real `consort receive`, this fails fsync() with EIO for a descriptor
// that is a folder (fstat: S_ISDIR) whose path (readlink /proc/self/fd/N) matches the fnmatch(3)
// pattern in CONSORT_FAIL_FSYNC_DIR (a glob over the whole path: `*` also matches `/`, so
// `*/inbox` is the inbound folder alone and `*/inbox/[0-9]*` its study folders). Files, and
// folders that do not match, get the real fsync. Each failure it makes is said on standard
// error, so a test can tell the shim fired; so is its loading.
//
// Built at test time: cc -shared -fPIC -o fail-folder-fsync.so fail-folder-fsync.c -ldl

#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

__attribute__((constructor)) static void announce(void) {
    const char *pattern = getenv("CONSORT_FAIL_FSYNC_DIR");
    dprintf(2, "fail-folder-fsync: loaded; fsync fails for folders matching '%s'\n", pattern ? pattern : "");
}

int fsync(int fd) {
    int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    const char *pattern = getenv("CONSORT_FAIL_FSYNC_DIR");
    struct stat status;
    if (pattern && *pattern && fstat(fd, &status) == 0 && S_ISDIR(status.st_mode)) {
        char link[64], path[4096];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t length = readlink(link, path, sizeof path - 1);
        if (length > 0) {
            path[length] = 0;
            if (fnmatch(pattern, path, 0) == 0) {
                dprintf(2, "fail-folder-fsync: fsync(%d) of %s: failing with EIO\n", fd, path);
                errno = EIO;
                return -1;
            }
        }
    }
    return real(fd);
}
