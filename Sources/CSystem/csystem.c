#define _GNU_SOURCE
#include <fcntl.h>
#include <unistd.h>
#include "csystem.h"

int consort_syncfs(int fd) { return syncfs(fd); }

int consort_set_direct_io(int fd, int on) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0) return -1;
    flags = on ? (flags | O_DIRECT) : (flags & ~O_DIRECT);
    return fcntl(fd, F_SETFL, flags);
}

#include <sys/vfs.h>

long consort_filesystem_type(const char *path) {
    struct statfs info;
    if (statfs(path, &info) != 0) return -1;
    return (long)info.f_type;
}
