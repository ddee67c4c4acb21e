#define _GNU_SOURCE
#include <fcntl.h>
#include <unistd.h>
#include "csystem.h"

int consort_syncfs(int fd) { return syncfs(fd); }

long long consort_copy_range(int in, long long offset, int out, long long count) {
    off64_t from = offset;
    return (long long)copy_file_range(in, &from, out, NULL, (size_t)count, 0);
}

int consort_start_writeback(int fd, long long offset, long long count) {
    return sync_file_range(fd, offset, count, SYNC_FILE_RANGE_WRITE);
}

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

#include <errno.h>
#include <signal.h>
#include <string.h>

static int consort_signal_pipe[2] = {-1, -1};

static void consort_signal_handler(int signal_number) {
    int saved = errno;  // the interrupted code may be about to read errno
    unsigned char byte = (unsigned char)signal_number;
    // Non-blocking: if 64 KiB of signals are already waiting, one more changes nothing.
    ssize_t ignored = write(consort_signal_pipe[1], &byte, 1);
    (void)ignored;
    errno = saved;
}

int consort_signals_arm(const int *signals, int count) {
    if (consort_signal_pipe[0] < 0 && pipe2(consort_signal_pipe, O_CLOEXEC | O_NONBLOCK) != 0) return -1;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = consort_signal_handler;
    action.sa_flags = SA_RESTART;  // blocking reads elsewhere carry on rather than fail with EINTR
    sigemptyset(&action.sa_mask);
    for (int i = 0; i < count; i++) {
        if (sigaction(signals[i], &action, NULL) != 0) return -1;
        // A signal blocked by an inherited mask would wait for ever: unblock it here.
        sigset_t one;
        sigemptyset(&one);
        sigaddset(&one, signals[i]);
        pthread_sigmask(SIG_UNBLOCK, &one, NULL);
    }
    return consort_signal_pipe[0];
}

#include <sys/socket.h>

int consort_peer_credentials(int fd, unsigned int *uid, int *pid) {
    struct ucred credentials;
    socklen_t length = sizeof credentials;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0) return -1;
    *uid = credentials.uid;
    *pid = credentials.pid;
    return 0;
}

#include <sys/resource.h>
#include <sys/syscall.h>

enum { consort_ioprio_who_process = 1 };  // linux/ioprio.h, which not every libc's headers carry

// This thread's standing, for consort_thread_unlower: unknown until first asked (a thread
// started by a lowered thread inherits its niceness, so "never lowered here" is not enough),
// lowered, level with its process, or refused (no headroom to come back up: not tried again).
// Only the first question of a thread that is level costs system calls.
enum { STANDING_UNKNOWN = 0, STANDING_LOWERED, STANDING_LEVEL, STANDING_REFUSED };
static __thread int consort_thread_standing;

// The process's niceness (its main thread's) and the calling thread's, with the thread's id.
// 0, or -1 with errno set (getpriority may rightly answer -1, so errno tells).
static int consort_niceness_pair(int *process, int *thread, id_t *tid) {
    errno = 0;
    *process = getpriority(PRIO_PROCESS, (id_t)getpid());
    if (*process == -1 && errno != 0) return -1;
    *tid = (id_t)syscall(SYS_gettid);
    errno = 0;
    *thread = getpriority(PRIO_PROCESS, *tid);
    return *thread == -1 && errno != 0 ? -1 : 0;
}

int consort_thread_nicer(int by) {
    // Relative to the process (its main thread), not to this thread: a connection's thread
    // asked again for each request stays where the first request put it.
    int process, now;
    id_t tid;
    if (consort_niceness_pair(&process, &now, &tid) != 0) return -1;
    int wanted = process + by > 19 ? 19 : process + by;
    if (now < wanted && setpriority(PRIO_PROCESS, tid, wanted) != 0) return -1;
    consort_thread_standing = STANDING_LOWERED;
    return 0;
}

int consort_thread_unlower(int *previous) {
    if (consort_thread_standing == STANDING_LEVEL) return 0;
    if (consort_thread_standing == STANDING_REFUSED) {
        errno = EACCES;
        return -1;
    }
    int process, now;
    id_t tid;
    if (consort_niceness_pair(&process, &now, &tid) != 0) return -1;
    if (now <= process) {
        if (consort_thread_standing == STANDING_UNKNOWN) consort_thread_standing = STANDING_LEVEL;
        return 0;
    }
    if (setpriority(PRIO_PROCESS, tid, process) != 0) {
        consort_thread_standing = STANDING_REFUSED;
        return -1;
    }
    consort_thread_standing = STANDING_LOWERED;
    *previous = now;
    return 1;
}

int consort_thread_set_niceness(int value) {
    return setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), value);
}

int consort_thread_niceness(void) {
    errno = 0;
    return getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
}

int consort_thread_io_priority(void) {
    return (int)syscall(SYS_ioprio_get, consort_ioprio_who_process, (pid_t)syscall(SYS_gettid));
}

int consort_thread_set_io_priority(int value) {
    return (int)syscall(SYS_ioprio_set, consort_ioprio_who_process, (pid_t)syscall(SYS_gettid), value);
}
